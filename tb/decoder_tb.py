"""Bench: InstructionDecoder against sim.accel_spec.decode and sim.accel_model.instruction_error
on random instruction words (biased towards every check's edges)."""

import cocotb
from cocotb.triggers import Timer

from hw.accel.decoder import EpilogueFields, GemmFields, TransferFields
from sim.accel_model import instruction_error
from sim.accel_spec import (EPILOGUE_FIELDS, EPILOGUE_MAX_THRESHOLD, FORMAT_BITS, GEMM_FIELDS,
                            TRANSFER_FIELDS, AccelError, Opcode, copy_count, decode, encode,
                            group_count, group_rows)
from sim.config import accel_config_from
from tb.harness import case, make_rng


def _pack(layout, fields) -> int:
    return sum(fields[name] << field.offset for name, field in layout)


def _random_instruction(rng, config) -> bytes:
    """Mostly well-formed words near the limits; some with a random opcode or random bits."""
    engine = config.engine
    if rng.random() < 0.05:
        return bytes(rng.integers(0, 256, 32, dtype="uint8"))
    opcode = int(rng.choice([1, 2, 3, 4, 7, int(rng.integers(0, 256))],
                            p=[.25, .2, .2, .25, .05, .05]))
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

    deps = {"fence": int(rng.integers(2))}
    if opcode == Opcode.GEMM:
        f = {name: near(min(engine.a_rows, engine.spad_width) // 2, width)
             for name, (_, width) in GEMM_FIELDS.items() if width == 16}
        f.update({name: int(rng.random() < 0.3) for name, (_, width) in GEMM_FIELDS.items()
                  if width == 1})
        return encode(Opcode.GEMM, **f, **deps)
    if opcode == Opcode.DONE:
        return encode(Opcode.DONE, **deps)
    if opcode == Opcode.EPILOGUE:
        return encode(Opcode.EPILOGUE, **_random_epilogue(rng, config, near), **deps)
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
    if rng.random() < 0.4:      # groups: 0 and 1 (one), a few, the field's top; group strides
        # on and off the beat; the rows of all groups just inside and outside the memory
        f["groups"] = int(rng.choice([0, 1, 2, 3, int(rng.integers(0, 256)), 255]))
        legal = rng.random() < 0.7
        if legal:       # otherwise legal (A's format into A, on the beat): the new checks decide
            addr = f["dram_addr"] % (1 << config.addr_width)
            a_format = FORMAT_BITS.index(engine.array.a_formats[0])
            f.update(target=0, dram_format=a_format, operand_format=a_format,
                     dram_addr=addr - addr % beat,
                     dram_stride=f["dram_stride"] - f["dram_stride"] % beat,
                     rows=max(1, f["rows"]), cols=max(1, f["cols"]))
            rows, width = engine.a_rows, engine.spad_width
        f["group_stride"] = int(rng.integers(0, 1 << 32))
        if rng.random() < 0.6:
            f["group_stride"] -= f["group_stride"] % beat
        if rng.random() < 0.8:  # copies (a sliding window): windows around the rows, copy
            # columns around the row's, the last copy's columns around the memory's width
            f["copies"] = int(rng.choice([0, 1, 2, 3, int(rng.integers(0, 16))]))
            if legal:   # a window that fits the rows
                f["rows"] = max(f["rows"], f["copies"])
            f["copy_cols"] = max(0, f["cols"] + int(rng.integers(-1 + legal, 3)))
            if rng.random() < 0.5:
                f["cols"] = max(1, width // (2 * max(1, f["copies"])))
                f["copy_cols"] = f["cols"] + int(rng.integers(-1 + legal, 2))
                f["mem_col"] = max(0, width - (max(1, f["copies"]) - 1) * f["copy_cols"]
                                   - f["cols"] + int(rng.integers(-1, 2)))
        window = max(1, f.get("copies", 0)) - 1
        if rng.random() < 0.6 and f["groups"] > 1:      # all groups' rows at the edge
            f["mem_row"] = int(rng.integers(0, 3))
            f["rows"] = max(1, (rows - f["mem_row"]) // f["groups"] + window
                            + int(rng.integers(-1, 2)))
        f = {name: min(max(0, value), (1 << TRANSFER_FIELDS[name][1]) - 1)
             for name, value in f.items()}
    return encode(Opcode(opcode), **f, **deps)


def _random_epilogue(rng, config, near) -> dict:
    """An EPILOGUE near every check's edge: each op and undefined ones, every format code,
    regions just inside and outside the accumulator memory, sums past 16 bits, source regions
    that are the destination, overlap it by one element or just miss it, broadcast,
    ``write_mask`` on every op, DROPOUT seeds 0 and 1 and thresholds around 256, rows of 8192
    and 8193 elements."""
    engine = config.engine
    rows, width = engine.acc_rows, engine.acc_width
    f = {"op": int(rng.integers(0, 16)) if rng.random() < 0.1 else int(rng.integers(0, 7)),
         "broadcast": int(rng.random() < 0.3), "saturate": int(rng.integers(2)),
         "write_mask": int(rng.random() < 0.2), "cast_format": int(rng.integers(0, 8)),
         "rows": near(rows // 4, 16), "cols": near(width // 4, 16),
         "imm0": int(rng.integers(0, 1 << 32)), "imm1": int(rng.integers(0, 1 << 32)),
         "seed": int(rng.choice([0, 1, int(rng.integers(0, 1 << 32))], p=[.1, .1, .8])),
         "threshold": int(rng.choice([0, 255, EPILOGUE_MAX_THRESHOLD, EPILOGUE_MAX_THRESHOLD + 1,
                                      int(rng.integers(0, 1 << 9))]))}
    if rng.random() < 0.1:
        f["cols"] = int(rng.choice([8191, 8192, 8193, 8194]))
    if rng.random() < 0.5:              # a region that fits, or just does not
        f["rows"] = int(rng.integers(1, min(rows, 12) + 1))
        f["cols"] = int(rng.integers(1, min(width, 40) + 1))
        f["dst_row"] = rows - f["rows"] + int(rng.integers(-3, 2))
        f["dst_col"] = width - f["cols"] + int(rng.integers(-3, 2))
        f["dst_row"], f["dst_col"] = max(f["dst_row"], 0), max(f["dst_col"], 0)
    else:
        f["dst_row"], f["dst_col"] = near(rows // 2, 16), near(width // 2, 16)
    height = 1 if f["broadcast"] else f["rows"]
    how = rng.integers(4)
    if how == 0:                        # the same region
        f["src_row"], f["src_col"] = f["dst_row"], f["dst_col"]
    elif how == 1:                      # overlapping by a corner, or just beside
        shift = int(rng.choice([-1, 0, 1]))
        f["src_row"] = f["dst_row"] + int(rng.choice([f["rows"] - 1, f["rows"], -height,
                                                      -height + 1])) + shift
        f["src_col"] = f["dst_col"] + int(rng.choice([f["cols"] - 1, f["cols"], -f["cols"],
                                                      -f["cols"] + 1]))
    else:
        f["src_row"], f["src_col"] = near(rows // 2, 16), near(width // 2, 16)
    return {name: max(0, min(int(value), (1 << EPILOGUE_FIELDS[name][1]) - 1))
            for name, value in f.items()}


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
        layout = {1: TransferFields, 2: TransferFields, 3: GemmFields,
                  4: EpilogueFields}.get(opcode)
        if layout is not None:
            port = {1: dut.transfer, 2: dut.transfer, 3: dut.gemm, 4: dut.epilogue}[opcode]
            want_bits = _pack(layout, fields)
            assert int(port.value) == want_bits, (f"vector {index}: {word.hex()}: fields "
                                                  f"{int(port.value):#x}, want {want_bits:#x}")
        if opcode in (Opcode.LOAD, Opcode.STORE):
            groups, copies = group_count(fields), copy_count(fields)
            got_groups = (int(dut.groups.value), int(dut.copies.value))
            assert got_groups == (groups, copies), \
                f"vector {index}: {word.hex()}: groups, copies {got_groups}"
            if want is AccelError.NONE or want is AccelError.SPAD_OVERFLOW:
                got_rows = (int(dut.group_rows.value), int(dut.span_rows.value))
                assert got_rows == (group_rows(fields), groups * group_rows(fields)), \
                    f"vector {index}: {word.hex()}: group rows, rows {got_rows}"
            if fields["groups"] > 1:
                seen.add(("groups", want))
            if fields["copies"] > 1:
                seen.add(("copies", want))
    dut._log.info("checked %d instructions; (opcode, error) pairs seen: %s", cfg["vectors"],
                  sorted((str(o), e.name) for o, e in seen))
    for code in (AccelError.NONE, AccelError.BAD_FIELD, AccelError.MISALIGNED,
                 AccelError.SPAD_OVERFLOW, AccelError.ILLEGAL_OPCODE):
        assert any(e is code for _, e in seen), f"no vector reached {code.name}"
    for code in (AccelError.NONE, AccelError.BAD_FIELD, AccelError.SPAD_OVERFLOW):
        assert (Opcode.EPILOGUE, code) in seen, f"no EPILOGUE reached {code.name}"
    for code in (AccelError.NONE, AccelError.MISALIGNED, AccelError.SPAD_OVERFLOW):
        assert ("groups", code) in seen, f"no transfer of several groups reached {code.name}"
    for code in (AccelError.NONE, AccelError.BAD_FIELD, AccelError.SPAD_OVERFLOW):
        assert ("copies", code) in seen, f"no transfer of several copies reached {code.name}"
