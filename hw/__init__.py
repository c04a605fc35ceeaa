"""Sparta gateware (Amaranth 0.5)."""
