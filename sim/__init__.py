"""Sparta golden models, performance models and simulator runners (numpy; no Amaranth here)."""
