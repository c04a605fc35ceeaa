"""AXI4 and AXI4-Lite interfaces as :mod:`amaranth.lib.wiring` signatures.

Both signatures are written from the manager's side (the manager drives ``awaddr``, the
subordinate ``awready``); a subordinate port is ``In(AXI4LiteSignature(...))``. Members carry
the AXI signal names in lower case, so a component port ``s_axil`` appears in the Verilog as
``s_axil__awaddr``, ``s_axil__awvalid``, ... (cocotbext-axi binds them with the prefix
``s_axil_``). Only what Sparta uses is present: no ``*user``, ``*qos``, ``*region``, no
exclusive access; ``awlock``/``arlock`` and ``awcache``/``arcache``/``awprot``/``arprot`` are
driven with constants by the manager.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.accel_spec import ADDR_WIDTHS, DATA_WIDTHS

__all__ = ["AXI4LiteSignature", "AXI4Signature"]


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite, manager's view: ``addr_width`` address bits, 32-bit data."""

    def __init__(self, addr_width: int, data_width: int = 32):
        if data_width not in (32, 64):
            raise ValueError(f"AXI4-Lite data_width must be 32 or 64, not {data_width!r}")
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 64:
            raise ValueError(f"AXI4-Lite addr_width must be an integer in 1..64, "
                             f"not {addr_width!r}")
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __repr__(self):
        return f"AXI4LiteSignature({self.addr_width}, {self.data_width})"


class AXI4Signature(wiring.Signature):
    """AXI4 (full), manager's view: ``addr_width`` in :data:`sim.accel_spec.ADDR_WIDTHS`,
    ``data_width`` in :data:`sim.accel_spec.DATA_WIDTHS`, ``id_width`` ID bits."""

    def __init__(self, addr_width: int, data_width: int, id_width: int = 1):
        if addr_width not in ADDR_WIDTHS:
            raise ValueError(f"AXI4 addr_width must be one of {ADDR_WIDTHS}, not {addr_width!r}")
        if data_width not in DATA_WIDTHS:
            raise ValueError(f"AXI4 data_width must be one of {DATA_WIDTHS}, not {data_width!r}")
        if not isinstance(id_width, int) or not 1 <= id_width <= 16:
            raise ValueError(f"AXI4 id_width must be an integer in 1..16, not {id_width!r}")
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        address = {"id": Out(id_width), "addr": Out(addr_width), "len": Out(8), "size": Out(3),
                   "burst": Out(2), "lock": Out(1), "cache": Out(4), "prot": Out(3),
                   "valid": Out(1), "ready": In(1)}
        super().__init__({
            **{f"aw{name}": member for name, member in address.items()},
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            **{f"ar{name}": member for name, member in address.items()},
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width and other.id_width == self.id_width)

    def __repr__(self):
        return f"AXI4Signature({self.addr_width}, {self.data_width}, {self.id_width})"
