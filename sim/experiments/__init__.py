"""Reusable experiment code: what the measurement scripts and ``sparta measure`` compute, callable
on one's own network, captures and engine configuration (numpy only; the scripts keep argument
parsing, printing, plots and the results files). One module per technique:
:mod:`sim.experiments.skip` (cycles of the zero-skipping engine on captured training steps,
``sparta measure skip``), :mod:`sim.experiments.sparsity` (the design study of zero-skipping
options and the reconstruction of a captured step's GEMM commands, ``sparta measure
sparsity``).
Also :mod:`sim.experiments.fgmp` (FGMP training measurement: traffic, FP8 share, accuracy,
energy, and the analysis of why elements stay fp16; ``sparta measure fgmp`` and ``fgmp-gap``)
and :mod:`sim.experiments.training` (the workload networks' training defaults, data and results
entry; ``sparta train``).
"""
