"""The recommendation model: file format, scoring rule, ONNX Runtime engine and micro-batcher.

Imports nothing from `server/` or `db/`, so it can be used alone from a shell or a benchmark.
"""
