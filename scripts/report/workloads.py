"""Tables of docs/workloads.md: the trained networks, their GEMM commands, sparsity and
accuracy from ``docs/results/workloads.json`` (``scripts.train``), and the RTL replay of a
training step from ``docs/results/replay.json`` (``scripts.replay``)."""

from scripts.report import block, results, table
from scripts.report.fgmp import fixed, images, source

__all__ = ["execution_order"]


def _networks() -> dict:
    return results("workloads")["networks"]


def _commands(entry: dict) -> dict:
    """``{command name: (layer, command)}`` of a network entry."""
    return {command["name"]: (layer, command) for layer, fields in entry["layers"].items()
            for command in fields["gemm"]}


def execution_order(entry: dict) -> list[str]:
    """The GEMM commands of one training step in execution order (``gemm_order``, recorded by
    ``scripts.train``)."""
    if "gemm_order" not in entry:
        raise KeyError(f"workloads.json has no gemm_order for {entry['config']['net']}: run "
                       f"`python -m scripts.train --net {entry['config']['net']}`")
    return entry["gemm_order"]


def _layer_order(entry: dict) -> list[str]:
    """Layers with weights in network order: the layers of the forward commands."""
    commands = _commands(entry)
    return [commands[name][0] for name in execution_order(entry)
            if commands[name][1]["kind"] == "forward"]


def _millions(value: int) -> str:
    return f"{value / 1e6:.2f} M" if value < 1e8 else f"{value / 1e6:.0f} M"


@block("workloads.parameters")
def parameters() -> str:
    """Parameters (a weight gradient's M x N: weights, plus the bias row when folded in),
    GEMM commands and MACs per training step, per network."""
    rows = []
    for net, entry in _networks().items():
        gemms = [c for layer in entry["layers"].values() for c in layer["gemm"]]
        macs = {kind: sum(c["M"] * c["N"] * c["K"] for c in gemms if c["kind"] == kind)
                for kind in ("forward", "backward_data", "weight_grad")}
        rows.append((f"`{net}`",
                     f"{sum(c['M'] * c['N'] for c in gemms if c['kind'] == 'weight_grad'):,}",
                     entry["config"]["batch_size"], len(gemms),
                     " / ".join(_millions(v) for v in macs.values())))
    return "\n".join([
        table(("network", "parameters (weights and biases)", "batch", "GEMM commands per step",
               "MACs forward / backward-data / weight-gradient"), rows),
        "", source("workloads", ["networks"], "`python -m scripts.train --net NET`")])


def _mask(value, first_input: bool) -> str:
    if value is None:
        return "(input pixels)" if first_input else ""
    return value


@block("workloads.digits_cnn_commands")
def digits_cnn_commands(net: str = "digits_cnn") -> str:
    entry = _networks()[net]
    commands = _commands(entry)
    first = _layer_order(entry)[0]
    rows = []
    for name in execution_order(entry):
        layer, c = commands[name]
        reads_input = layer == first and c["kind"] in ("forward", "weight_grad")
        rows.append((name + (" (+ bias row)" if c["bias_row"] else ""), c["kind"],
                     c["M"], c["N"], c["K"], "yes" if c["transpose_a"] else "",
                     "yes" if c["transpose_b"] else "", "bias" if c["accumulate"] else "",
                     _mask(c["a_mask"], reads_input), _mask(c["b_mask"], False),
                     _mask(c["out_mask"], False)))
    return "\n".join([
        table(("command", "kind", "M", "N", "K", "transpose_a", "transpose_b", "accumulate",
               "zeros of A", "zeros of B", "outputs gated by"), rows, "llrrrllllll"),
        "", source("workloads", ["networks"], f"`python -m scripts.train --net {net}` "
                                              f"(`networks.{net}.layers.*.gemm`)")])


@block("workloads.digits_cnn_sparsity")
def digits_cnn_sparsity(net: str = "digits_cnn") -> str:
    entry = _networks()[net]
    keys = ("activation_zero_fraction", "grad_zero_fraction", "mask_zero_fraction")
    rows = [(layer, *("-" if entry["layers"][layer]["sparsity"][key] is None else
                      fixed(entry["layers"][layer]["sparsity"][key], 3) for key in keys))
            for layer in _layer_order(entry)]
    return "\n".join([
        table(("layer", "activations X", "gradients dY", "mask of dY"), rows),
        "", source("workloads", ["networks"], f"`python -m scripts.train --net {net}` "
                                              f"(`networks.{net}.layers.*.sparsity`)")])


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"


def _accuracy(value) -> str:
    return "-" if value is None else f"{fixed(value, 2, scale=2)}%"


@block("workloads.results")
def accuracy() -> str:
    rows = []
    for net, e in _networks().items():
        gap = e["accuracy_gap_points"]
        times = e["wall_time_s"]
        rows.append((net, e["epochs"], _accuracy(e["test_accuracy_accel"]),
                     _accuracy(e["test_accuracy_fp32"]),
                     "-" if gap is None else fixed(gap, 2) + images(gap, e["test_samples"]),
                     " / ".join(_duration(times[b]) for b in ("accel", "fp32") if b in times)))
    return "\n".join([
        table(("network", "epochs", "accelerator numerics (fp16 operands, golden GEMM)",
               "FP32 reference", "gap (points)", "time accel / FP32"), rows),
        "", source("workloads", ["networks"], "`python -m scripts.train --net NET`")])


_KINDS = ("forward", "backward_data", "weight_grad", "total")


@block("workloads.replay")
def replay() -> str:
    step = results("replay")["replay_step"]
    pes = step["engine"]["rows"] * step["engine"]["cols"]
    per_kind = step["per_kind"]
    rows = [(kind, f"{r['commands']:,}", f"{r['macs']:,}", f"{r['cycles']:,}",
             f"{r['ideal_cycles']:,}", f"{fixed(r['utilization'], 1, scale=2)}%")
            for kind in [k for k in _KINDS if k in per_kind] + sorted(set(per_kind) - set(_KINDS))
            for r in [per_kind[kind]]]
    return "\n".join([
        table(("GEMM kind", "commands", "MACs", "cycles", f"ideal cycles (MACs / {pes})",
               "utilization"), rows),
        "", source("replay", ["replay_step"], f"`{step['reproduce']}`")])
