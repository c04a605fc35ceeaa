"""AIP (approximate inner products) in hardware: the output selection unit
(:mod:`hw.aip.select`) and a GEMM engine composed with it (:mod:`hw.aip.engine`)."""
