"""Floating-point units: operand decode, exact multiplier, FP32 adder and accumulator, rounded FP32
multiplier (the epilogue's), converter."""
