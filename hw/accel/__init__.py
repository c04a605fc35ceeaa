"""The accelerator top level: AXI4-Lite registers, an AXI4 DMA, and (to come) the controller
that runs a compiled program from DRAM on the GEMM engine (``docs/accel.md``)."""
