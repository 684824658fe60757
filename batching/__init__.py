"""Batching shared by inference (`model/`) and writes (`db/`): one gathering rule."""
