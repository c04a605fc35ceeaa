"""Fine-grained mixed precision (FGMP) store and load path: per-element FP8/fp16 encoder,
block packer (FP32 accumulators -> FGMP byte stream on the bus) and unpacker (bus -> tagged
PE operands). The golden model is :mod:`sim.fgmp`; the hardware is described in
``docs/fgmp_hw.md``."""
