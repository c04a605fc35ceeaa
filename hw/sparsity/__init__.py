"""Sparsity hardware (issue 5): zero detect on operand words and dropout-mask regeneration.

The bits are defined by the golden models: :func:`sim.sparsity.zero_bitmap` for zero detect,
:func:`sim.lfsr.dropout_keep_mask` for dropout masks.
"""
