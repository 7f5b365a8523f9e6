"""Shared builders for the evaluate-step tests (tiny models trained in seconds, step specs)."""
