"""GEMM engine: PE array, skewed scratchpads, tile sequencer and top level."""
