"""Bench: InstructionDecoder against sim.accel_spec.decode and sim.accel_model.instruction_error
on random instruction words (biased towards every check's edges)."""

import cocotb
from cocotb.triggers import Timer

from hw.accel.decoder import GemmFields, TransferFields
from sim.accel_model import instruction_error
from sim.accel_spec import (GEMM_FIELDS, TRANSFER_FIELDS, AccelError, Opcode, decode, encode)
from sim.config import accel_config_from
from tb.harness import case, make_rng


def _pack(layout, fields) -> int:
    return sum(fields[name] << field.offset for name, field in layout)


def _random_instruction(rng, config) -> bytes:
    """Mostly well-formed words near the limits; some with a random opcode or random bits."""
    engine = config.engine
    if rng.random() < 0.05:
        return bytes(rng.integers(0, 256, 32, dtype="uint8"))
    opcode = int(rng.choice([1, 2, 3, 7, int(rng.integers(0, 256))], p=[.35, .3, .25, .05, .05]))
    if opcode not in Opcode._value2member_map_:
        word = int.from_bytes(bytes(rng.integers(0, 256, 32, dtype="uint8")), "little")
        return ((word & ~0xFF) | opcode).to_bytes(32, "little")

    def near(limit, bits):
        """0, 1, around ``limit``, near the field's top (sums that need a 17th bit), or
        anything that fits ``bits``."""
        pick = rng.integers(6)
        value = [0, 1, limit - int(rng.integers(0, 3)), limit + int(rng.integers(0, 3)),
                 (1 << bits) - 1 - int(rng.integers(0, 3)), int(rng.integers(0, 1 << bits))][pick]
        return max(0, min(value, (1 << bits) - 1))

    deps = {name: int(rng.integers(2)) for name in ("pop_prev", "pop_next", "push_prev",
                                                     "push_next")}
    if opcode == Opcode.GEMM:
        f = {name: near(min(engine.a_rows, engine.spad_width) // 2, width)
             for name, (_, width) in GEMM_FIELDS.items() if width == 16}
        f.update({name: int(rng.random() < 0.3) for name, (_, width) in GEMM_FIELDS.items()
                  if width == 1})
        return encode(Opcode.GEMM, **f, **deps)
    if opcode == Opcode.DONE:
        return encode(Opcode.DONE, **deps)
    target = int(rng.choice([0, 1, 2, 3], p=[.3, .3, .3, .1]))
    rows = {0: engine.a_rows, 1: engine.b_rows}.get(target, engine.acc_rows)
    width = engine.spad_width if target < 2 else engine.acc_width
    beat = config.beat_bytes
    # up to one bit beyond the address width (64 at most)
    addr = int.from_bytes(rng.bytes(8), "little") >> (64 - min(config.addr_width + 1, 64))
    if rng.random() < 0.7:
        addr -= addr % beat
    stride = int(rng.integers(0, 1 << 20))
    if rng.random() < 0.7:
        stride -= stride % beat
    f = {"target": target, "dram_format": int(rng.integers(0, 8)),
         "operand_format": int(rng.integers(0, 8)), "saturate": int(rng.integers(2)),
         "dram_addr": addr % (1 << 64), "dram_stride": stride,
         "rows": near(rows // 2, 16), "cols": near(width // 2, 16),
         "mem_row": near(rows // 2, 16), "mem_col": near(width // 2, 16)}
    if rng.random() < 0.5:      # a format pair that is legal somewhere
        f["dram_format"] = int(rng.choice([f["operand_format"] % 5, 3]))
    return encode(Opcode(opcode), **f, **deps)


@cocotb.test()
async def decodes_like_the_model(dut):
    cfg = case()
    config = accel_config_from(cfg["config"])
    rng = make_rng(dut)
    seen = set()
    for index in range(cfg["vectors"]):
        word = _random_instruction(rng, config)
        opcode, fields = decode(word)
        want = instruction_error(config, opcode, fields)
        if opcode == Opcode.GEMM and not ((fields["mask_host"] or fields["mask_dropout"])
                                          and not config.engine.output_mask):
            want = AccelError.NONE       # sizes and regions: the engine's own check
        dut.instruction.value = int.from_bytes(word, "little")
        await Timer(1, unit="ns")
        got = int(dut.error.value)
        seen.add((opcode if opcode in Opcode._value2member_map_ else -1, want))
        assert got == want, (f"vector {index}: instruction {word.hex()} ({fields}): error "
                             f"{AccelError(got).name if got in AccelError._value2member_map_ else got}"
                             f", model {want.name}")
        assert int(dut.opcode.value) == opcode, f"vector {index}: {word.hex()}: opcode"
        layout, table = ((TransferFields, TRANSFER_FIELDS) if opcode in (1, 2) else
                         (GemmFields, GEMM_FIELDS) if opcode == 3 else (None, None))
        if layout is not None:
            port = dut.transfer if opcode in (1, 2) else dut.gemm
            want_bits = _pack(layout, fields)
            assert int(port.value) == want_bits, (f"vector {index}: {word.hex()}: fields "
                                                  f"{int(port.value):#x}, want {want_bits:#x}")
    dut._log.info("checked %d instructions; (opcode, error) pairs seen: %s", cfg["vectors"],
                  sorted((o, e.name) for o, e in seen))
    for code in (AccelError.NONE, AccelError.BAD_FIELD, AccelError.MISALIGNED,
                 AccelError.SPAD_OVERFLOW, AccelError.ILLEGAL_OPCODE):
        assert any(e is code for _, e in seen), f"no vector reached {code.name}"
