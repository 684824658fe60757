"""Comparison servers for POST /predict: the same job written three other ways (README)."""
