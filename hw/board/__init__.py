"""A board build: the accelerator with on-chip RAM as its DRAM and a UART bridge as its host
link (``docs/board.md``)."""
