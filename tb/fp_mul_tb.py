"""Bench: FPMultiplier against the golden exact product :func:`sim.numerics.fp32_mul`.

The configuration (``SPARTA_CASE``) gives ``a_formats``, ``b_formats``, ``stages`` and
``vectors``. Stimulus, directed cases first:

* every code of each allowed FP8 format, on either side, against random partners of every
  format allowed on the other side;
* all pairs of fp16 edge cases (:func:`tb.vectors.edge_bits`) when both sides allow fp16;
* all pairs of special values (signed zeros, infinities, NaNs of both signs, extreme
  subnormals, one, largest finite) over every allowed format pair: ``inf * 0``, NaN operands...;
* subnormal x subnormal for every allowed format pair;
* operands with a disallowed format tag (always tag 3; fp16 in an FP8-only configuration)
  against special partners: the product must be the canonical NaN;

then ``vectors`` random mixed-format pairs (a few with disallowed tags, FP8 operands with
garbage in the ignored high byte).

Besides the products, ``products_match_golden`` checks the ``narrow`` output of every product
taken (high exactly when both tags are FP8 formats allowed on their side, in a configuration
with a narrow path — ``narrow_path`` in the configuration, default true — or an FP8-only one)
and, in every cycle of a configuration with a narrow path, the operand isolation of the two
significand multipliers (internal signals ``use_narrow``, ``wide_a_sig``/``wide_b_sig``,
``narrow_a_sig``/``narrow_b_sig``: the inputs of the multiplier not in use are zero).
"""

import cocotb
import numpy as np
from amaranth import Shape
from cocotb.triggers import ReadOnly

from hw.fp.multiplier import MulOperands
from hw.fp.operand import OperandFormat
from sim.formats import FP32, OPERAND_FORMATS
from sim.numerics import fp32_mul
from tb.harness import case, drive_and_check, make_rng, next_cycle, reset, start_clock
from tb.packing import pack
from tb.vectors import edge_bits, mixed_bits

TAG_OF = {name: OperandFormat.of(name).value for name in OPERAND_FORMATS}
ALL_TAGS = range(1 << Shape.cast(OperandFormat).width)   # tag values nothing is assigned to included
TAG_NAME = {tag: next((n for n, t in TAG_OF.items() if t == tag), f"tag{tag}") for tag in ALL_TAGS}
SUBNORMAL_PAIRS = 64    # per format pair
FP8_NAMES = {name for name, fmt in OPERAND_FORMATS.items() if fmt.width == 8}


def specials(fmt) -> np.ndarray:
    """Signed zeros, infinities and NaNs, extreme subnormals, one, largest finite (both signs)."""
    m = fmt.man_bits
    magnitudes = [0, 1, (1 << m) - 1, fmt.bias << m, fmt.max_finite_bits, fmt.nan_bits,
                  (fmt.exp_max_field << m) | ((1 << m) - 1)]
    if fmt.has_inf:
        magnitudes += [fmt.inf_bits, fmt.inf_bits + 1]
    magnitudes = np.unique(np.array(magnitudes, dtype=np.uint64))
    return np.concatenate([magnitudes, magnitudes | np.uint64(fmt.sign_mask)])


def all_pairs(a, b):
    """Every ``(a[i], b[j])``, as two flat arrays."""
    return np.repeat(a, len(b)), np.tile(b, len(a))


class Vectors:
    """Columns of operand pairs: tags and 16-bit words of ``a`` and ``b``."""

    def __init__(self):
        self.columns = {"a_tag": [], "a_bits": [], "b_tag": [], "b_bits": []}
        self.counts = {}

    def add(self, kind, a_tag, a_bits, b_tag, b_bits):
        n = len(a_bits)
        for key, value in (("a_tag", a_tag), ("a_bits", a_bits), ("b_tag", b_tag), ("b_bits", b_bits)):
            self.columns[key].append(np.broadcast_to(np.asarray(value, dtype=np.uint64), (n,)))
        self.counts[kind] = self.counts.get(kind, 0) + n

    def arrays(self):
        return {key: np.concatenate(parts) for key, parts in self.columns.items()}


def mul_vectors(rng, n, a_formats, b_formats):
    """Directed cases then ``n`` random pairs; returns ``(columns, counts per kind)``."""
    vec = Vectors()
    sides = {"a": list(a_formats), "b": list(b_formats)}
    disallowed = {side: [t for t in ALL_TAGS if TAG_NAME[t] not in names] for side, names in sides.items()}

    def add_pair(kind, fa, a_bits, fb, b_bits):
        vec.add(kind, TAG_OF[fa], a_bits, TAG_OF[fb], b_bits)

    # every FP8 code against random partners of every format of the other side
    for own, other in (("a", "b"), ("b", "a")):
        for name in sides[own]:
            fmt = OPERAND_FORMATS[name]
            if fmt.width != 8:
                continue
            codes = fmt.all_codes().astype(np.uint64)
            for partner in sides[other]:
                partners = mixed_bits(rng, OPERAND_FORMATS[partner], len(codes))
                if own == "a":
                    add_pair("fp8 codes", name, codes, partner, partners)
                else:
                    add_pair("fp8 codes", partner, partners, name, codes)

    if "fp16" in sides["a"] and "fp16" in sides["b"]:
        edges = edge_bits(OPERAND_FORMATS["fp16"])
        a_bits, b_bits = all_pairs(edges, edges)
        add_pair("fp16 edge pairs", "fp16", a_bits, "fp16", b_bits)

    for fa in sides["a"]:
        for fb in sides["b"]:
            fmt_a, fmt_b = OPERAND_FORMATS[fa], OPERAND_FORMATS[fb]
            a_bits, b_bits = all_pairs(specials(fmt_a), specials(fmt_b))
            add_pair("special pairs", fa, a_bits, fb, b_bits)
            add_pair("subnormal pairs", fa, subnormals(rng, fmt_a, SUBNORMAL_PAIRS),
                     fb, subnormals(rng, fmt_b, SUBNORMAL_PAIRS))

    # disallowed tags: NaN whatever their bits and whatever the partner (zeros, infinities)
    for own, other in (("a", "b"), ("b", "a")):
        for tag in disallowed[own]:
            for partner in sides[other]:
                partner_bits = specials(OPERAND_FORMATS[partner])
                own_bits = junk_words(rng, len(partner_bits))
                if own == "a":
                    vec.add("disallowed tags", tag, own_bits, TAG_OF[partner], partner_bits)
                else:
                    vec.add("disallowed tags", TAG_OF[partner], partner_bits, tag, own_bits)
    for tag_a in disallowed["a"]:
        for tag_b in disallowed["b"]:
            vec.add("disallowed tags", tag_a, junk_words(rng, 4), tag_b, junk_words(rng, 4))

    a_tag, a_bits = random_operands(rng, n, sides["a"], disallowed["a"])
    b_tag, b_bits = random_operands(rng, n, sides["b"], disallowed["b"])
    vec.add("random pairs", a_tag, a_bits, b_tag, b_bits)
    return vec.arrays(), vec.counts


def subnormals(rng, fmt, n):
    magnitude = rng.integers(1, 1 << fmt.man_bits, n, dtype=np.uint64)
    sign = rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(fmt.width - 1)
    return magnitude | sign


def junk_words(rng, n):
    """Words for operands with a disallowed tag: zero and one patterns first, then random."""
    words = rng.integers(0, 1 << 16, n, dtype=np.uint64)
    words[: min(n, 2)] = [0, 0x3C00][: min(n, 2)]
    return words


def random_operands(rng, n, names, disallowed_tags, p_disallowed=0.02):
    """``n`` random operands of the allowed formats, a few with disallowed tags; FP8 operands
    get random high bytes half of the time (the multiplier must ignore them)."""
    choice = rng.integers(0, len(names), n)
    tags = np.array([TAG_OF[names[c]] for c in choice], dtype=np.uint64)
    bits = np.zeros(n, dtype=np.uint64)
    for index, name in enumerate(names):
        sel = choice == index
        fmt = OPERAND_FORMATS[name]
        bits[sel] = mixed_bits(rng, fmt, int(sel.sum()))
        if fmt.width == 8:
            junk = sel & (rng.random(n) < 0.5)
            bits[junk] |= rng.integers(1, 256, int(junk.sum()), dtype=np.uint64) << np.uint64(8)
    bad = rng.random(n) < p_disallowed
    bad_tags = np.array(disallowed_tags, dtype=np.uint64)
    tags[bad] = bad_tags[rng.integers(0, len(bad_tags), int(bad.sum()))]
    bits[bad] = junk_words(rng, int(bad.sum()))
    return tags, bits


def golden_products(cols, a_formats, b_formats):
    """fp32_mul for pairs of allowed formats; the canonical NaN for any disallowed tag."""
    out = np.full(len(cols["a_bits"]), FP32.nan_bits, dtype=np.uint32)
    for fa in a_formats:
        for fb in b_formats:
            fmt_a, fmt_b = OPERAND_FORMATS[fa], OPERAND_FORMATS[fb]
            sel = (cols["a_tag"] == TAG_OF[fa]) & (cols["b_tag"] == TAG_OF[fb])
            a_bits = cols["a_bits"][sel] & np.uint64((1 << fmt_a.width) - 1)
            b_bits = cols["b_bits"][sel] & np.uint64((1 << fmt_b.width) - 1)
            out[sel] = fp32_mul(fmt_a, a_bits, fmt_b, b_bits)
    return out


def narrow_expected(cfg):
    """``(fp8 x fp8 products computed narrow, a separate narrow multiplier exists)`` for a
    configuration, from its formats alone."""
    fp8 = {side: FP8_NAMES & set(cfg[f"{side}_formats"]) for side in "ab"}
    wide = any(set(cfg[f"{side}_formats"]) - FP8_NAMES for side in "ab")
    pairs = bool(fp8["a"] and fp8["b"])
    separate = pairs and wide and cfg.get("narrow_path", True)
    return pairs and (separate or not wide), separate


def golden_narrow(cols, cfg):
    """The expected ``narrow`` output of every vector: both tags allowed FP8 formats."""
    narrow, _ = narrow_expected(cfg)
    if not narrow:
        return np.zeros(len(cols["a_tag"]), dtype=bool)
    tags = {side: [TAG_OF[n] for n in cfg[f"{side}_formats"] if n in FP8_NAMES] for side in "ab"}
    return np.isin(cols["a_tag"], tags["a"]) & np.isin(cols["b_tag"], tags["b"])


class NarrowMonitor:
    """Samples, once per cycle alongside :class:`tb.harness.StreamChecker`, the ``narrow``
    output of every product taken and, with a narrow path, the isolation of the multipliers."""

    def __init__(self, dut, isolation):
        self.dut = dut
        self.isolation = isolation
        self.taken = []                  # ``narrow`` of every product taken, in order
        self.cycles_by_path = {0: 0, 1: 0}

    async def run(self):
        dut = self.dut
        while True:
            await next_cycle(dut)
            await ReadOnly()
            if dut.o__valid.value and dut.o__ready.value:
                self.taken.append(int(dut.narrow.value))
            if self.isolation:
                self.check_isolation()

    def check_isolation(self):
        dut = self.dut
        use_narrow = int(dut.use_narrow.value)
        self.cycles_by_path[use_narrow] += 1
        idle = ("wide_a_sig", "wide_b_sig") if use_narrow else ("narrow_a_sig", "narrow_b_sig")
        for name in idle:
            value = int(getattr(dut, name).value)
            assert value == 0, (f"operand isolation broken: use_narrow={use_narrow} but "
                                f"{name}=0x{value:x}")


def stimulus(dut, salt, n):
    cfg = case()
    rng = make_rng(dut, salt)
    cols, counts = mul_vectors(rng, n, cfg["a_formats"], cfg["b_formats"])
    expected = golden_products(cols, cfg["a_formats"], cfg["b_formats"])
    inputs = pack(MulOperands, a__bits=cols["a_bits"], a__fmt=cols["a_tag"],
                  b__bits=cols["b_bits"], b__fmt=cols["b_tag"])

    def describe(k):
        return (f"a={TAG_NAME[int(cols['a_tag'][k])]} 0x{int(cols['a_bits'][k]):04x} "
                f"b={TAG_NAME[int(cols['b_tag'][k])]} 0x{int(cols['b_bits'][k]):04x}")

    return rng, inputs, expected.tolist(), describe, counts, cols


@cocotb.test()
async def products_match_golden(dut):
    """Directed and random operand pairs, random idle cycles and backpressure; the ``narrow``
    output of every product and the isolation of the significand multipliers."""
    cfg = case()
    rng, inputs, expected, describe, counts, cols = stimulus(dut, 0, cfg["vectors"])
    dut._log.info("vectors: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    _, separate = narrow_expected(cfg)
    monitor = NarrowMonitor(dut, isolation=separate)
    task = cocotb.start_soon(monitor.run())     # samples in the checker's cycles (same trigger)
    await drive_and_check(dut, rng, inputs, expected, describe)
    task.cancel()

    want = golden_narrow(cols, cfg).astype(int).tolist()
    assert len(monitor.taken) == len(want), (f"monitor saw {len(monitor.taken)} products, "
                                             f"{len(want)} were sent")
    for k, (got, exp) in enumerate(zip(monitor.taken, want)):
        assert got == exp, f"narrow flag at output {k}: {describe(k)}; rtl={got} expected={exp}"
    dut._log.info("narrow flag checked on %d products (%d narrow)", len(want), sum(want))
    if separate:
        dut._log.info("isolation checked in %d cycles on the narrow path, %d on the wide one",
                      monitor.cycles_by_path[1], monitor.cycles_by_path[0])
        assert monitor.cycles_by_path[0] and monitor.cycles_by_path[1], "a path was never used"


@cocotb.test()
async def latency_and_throughput(dut):
    """Back-to-back inputs with the output always ready: the first product appears exactly
    ``stages`` cycles after the first input, then one product every cycle, no bubbles."""
    stages = case()["stages"]
    rng, directed, directed_expected, describe_directed, _, _ = stimulus(dut, 1, 0)
    count = 64
    picks = rng.choice(len(directed), count, replace=False)     # a sample of the directed cases
    inputs = [directed[p] for p in picks]
    expected = [directed_expected[p] for p in picks]

    def describe(k):
        return describe_directed(int(picks[k]))

    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 1
    await start_clock(dut)
    await reset(dut)
    await next_cycle(dut)
    for cycle in range(count + stages + 4):
        dut.i__valid.value = int(cycle < count)
        if cycle < count:
            dut.i__payload.value = inputs[cycle]
        await ReadOnly()
        if cycle < count:
            assert dut.i__ready.value == 1, f"input not accepted in cycle {cycle}"
        k = cycle - stages
        if 0 <= k < count:
            assert dut.o__valid.value == 1, f"no output in cycle {cycle} (latency must be {stages})"
            got = int(dut.o__payload.value)
            assert got == expected[k], (f"mismatch at vector {k}: {describe(k)}; "
                                        f"rtl=0x{got:x} golden=0x{expected[k]:x}")
        else:
            assert dut.o__valid.value == 0, f"unexpected output in cycle {cycle} (latency {stages})"
        await next_cycle(dut)
