"""Sparta cocotb benches (``*_tb.py``) and their pytest runners (``test_*.py``)."""
