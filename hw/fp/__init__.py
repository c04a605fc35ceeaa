"""Floating-point units: operand decode, exact multiplier, FP32 adder and accumulator, converter."""
