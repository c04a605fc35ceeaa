"""Formal properties of the gateware: harnesses that wrap a block, leave its inputs free (or
constrain them with ``Assume``) and state what it promises with ``Assert`` and ``Cover``.

Each harness is a :class:`amaranth.lib.wiring.Component` with the block's own ports, so the
solver drives every input. ``mutant`` harnesses inject a known fault between the block and the
properties: the runner (:mod:`scripts.formal`, ``sparta formal``) expects them to fail, which
shows that the properties are not vacuous. :data:`HARNESSES` lists them all.
"""

from .aip_select import AipSelectProperties
from .bursts import BurstProperties
from .controller import ControllerInterlockProperties, ControllerProperties
from .dma import DmaProperties
from .fgmp_packer import FgmpPackerProperties
from .fgmp_unpacker import FgmpUnpackerProperties
from .mask_writer import MaskWriterProperties
from .registers import RegistersProperties
from .scatter import ScatterProperties
from .sequencer import Sequencer4x4Properties, SequencerProperties

__all__ = ["HARNESSES", "Harness", "AipSelectProperties", "BurstProperties",
           "ControllerInterlockProperties", "ControllerProperties", "DmaProperties", "FgmpPackerProperties",
           "FgmpUnpackerProperties", "MaskWriterProperties",
           "RegistersProperties", "ScatterProperties", "Sequencer4x4Properties",
           "SequencerProperties"]

from .common import Harness  # noqa: E402

#: Every harness by name: what it checks, how deep, and its mutants.
HARNESSES: dict[str, Harness] = {harness.name: harness for harness in (
    RegistersProperties.harness(),
    SequencerProperties.harness(),
    Sequencer4x4Properties.harness(),
    BurstProperties.harness(),
    DmaProperties.harness(),
    ScatterProperties.harness(),
    AipSelectProperties.harness(),
    FgmpPackerProperties.harness(),
    FgmpUnpackerProperties.harness(),
    MaskWriterProperties.harness(),
    ControllerProperties.harness(),
    ControllerInterlockProperties.harness(),
)}
