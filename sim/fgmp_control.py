"""Dynamic FP8-share control of FGMP training: one threshold ``t`` per layer and tensor class.

The encoding rule (:mod:`sim.fgmp`) stores an element as FP8 when its FP8 value is within a
relative error of ``2**-t`` of its fp16 value. This module chooses ``t`` while a network trains
(the host driver's job: it programs ``t`` into the CSR of each layer's pack and unpack units).

Policy (written down in ``docs/fgmp.md``)
-----------------------------------------
* Tensor classes: ``weight`` (W), ``activation`` (X, and the layer outputs stored as the next
  layer's X) and ``gradient`` (dY, the input gradients stored as the previous layer's dY, and
  the weight gradients dW). Each class has its FP8 format (default e4m3, e4m3, e5m2) and its own
  ``t`` per layer. Layers that read one stored tensor share its ``t`` (a ResNet block's first
  convolution and projection shortcut read the same X; its second convolution and the shortcut
  read the same dY): they form one *group*. The rule's ``flush_underflow`` bit is fixed per
  class (``FgmpPolicy.flush_underflow``, default off); the control does not change it.
* Start: ``t = t_start`` (default ``man_bits + 1`` of the class format, 4 for e4m3 and 3 for
  e5m2: the largest ``t`` at which every value in the FP8 normal range is stored as FP8, since
  round to nearest errs by at most half an ulp).
* Signal: in every training step, each GEMM reports, per operand class, the relative error
  ``||C_q - C|| / ||C||`` (Frobenius norms) of its output when that operand alone is read
  through FGMP and the other stays fp16 (``C`` with both operands fp16). A stored weight
  gradient also reports the relative error of its own FGMP storage. A group's error for the
  step is the largest of its reports; the controller averages it over ``interval`` steps.
* Decision, every ``interval`` training steps of the group: average error above the class
  budget -> ``t += 1`` (fewer FP8 elements, each FP8 element at most half as wrong), average
  below ``relax * budget`` -> ``t -= 1`` (not below ``t_start``), else keep. ``t`` stays in
  ``t_start..T_MAX``.
* Timing: a new ``t`` takes effect at the group's next forward GEMM, so one training step
  always stores and reads a tensor with one ``t``. Reports from forward passes that are not
  followed by a backward pass (evaluation on the test set) are discarded: the test set never
  steers the policy.
"""

from __future__ import annotations

import dataclasses
import math

from .fgmp import FGMP_FORMATS, T_MAX, _fmt8, _threshold

__all__ = ["TENSOR_CLASSES", "OPERAND_CLASSES", "FgmpPolicy", "FgmpController"]

#: Tensor classes, each with its FP8 format and threshold.
TENSOR_CLASSES = ("weight", "activation", "gradient")
#: Class of the A and B operands of each GEMM kind (see :mod:`sim.lowering`).
OPERAND_CLASSES = {"forward": ("activation", "weight"),
                   "weight_grad": ("activation", "gradient"),
                   "backward_data": ("gradient", "weight")}


def _budget(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ValueError(f"{field} must be a finite number > 0, not {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FgmpPolicy:
    """Configuration of FGMP training numerics and of the threshold control.

    Parameters
    ----------
    weight_format, activation_format, gradient_format : str
        FP8 format of each tensor class (``"e4m3"`` or ``"e5m2"``).
    t_start : dict or None
        Initial (and smallest) ``t`` per class; a missing class gets ``man_bits + 1`` of its
        format.
    adaptive : bool
        Adapt ``t`` (True) or keep ``t_start`` for the whole run (False).
    budget_weight, budget_activation, budget_gradient : float
        Largest tolerated average relative GEMM-output error caused by the class (> 0).
    interval : int
        Training steps between two decisions of a group (>= 1).
    relax : float
        A group whose average error is below ``relax * budget`` lowers its ``t`` (0 < relax < 1).
    store_weight_grad : bool
        The weight gradient dW is stored (and so rounded) as FGMP of the gradient class; if
        False it reaches the optimizer in fp32.
    flush_underflow : tuple of str
        Tensor classes whose FP8 underflow (a non-zero value that rounds to an FP8 zero) is
        stored as that FP8 signed zero instead of fp16 (the rule's ``flush_underflow`` bit,
        :func:`sim.fgmp.encode_tags`); default none.
    """

    weight_format: str = "e4m3"
    activation_format: str = "e4m3"
    gradient_format: str = "e5m2"
    t_start: dict | None = None
    adaptive: bool = True
    budget_weight: float = 0.05
    budget_activation: float = 0.05
    budget_gradient: float = 0.10
    interval: int = 10
    relax: float = 0.3
    store_weight_grad: bool = True
    flush_underflow: tuple = ()

    def __post_init__(self):
        flush = self.flush_underflow
        if not isinstance(flush, (tuple, list)) or not all(
                isinstance(cls, str) and cls in TENSOR_CLASSES for cls in flush) or \
                len(set(flush)) != len(flush):
            raise ValueError(f"flush_underflow must be a tuple of distinct tensor classes among "
                             f"{list(TENSOR_CLASSES)}, not {flush!r}")
        object.__setattr__(self, "flush_underflow", tuple(cls for cls in TENSOR_CLASSES
                                                          if cls in flush))
        for cls in TENSOR_CLASSES:
            _fmt8(getattr(self, f"{cls}_format"))
            _budget(getattr(self, f"budget_{cls}"), f"budget_{cls}")
        field = "t_start"
        if self.t_start is not None:
            if not isinstance(self.t_start, dict) or not set(self.t_start) <= set(TENSOR_CLASSES):
                raise ValueError(f"{field} must be a dict with keys among {list(TENSOR_CLASSES)}, "
                                 f"not {self.t_start!r}")
            for cls, t in self.t_start.items():
                try:
                    _threshold(t)
                except ValueError:
                    raise ValueError(f"{field}[{cls!r}] must be an integer in 0..{T_MAX}, "
                                     f"not {t!r}") from None
        for name in ("adaptive", "store_weight_grad"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, not {getattr(self, name)!r}")
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or \
                self.interval < 1:
            raise ValueError(f"interval must be an integer >= 1, not {self.interval!r}")
        if isinstance(self.relax, bool) or not isinstance(self.relax, (int, float)) or \
                not 0 < self.relax < 1:
            raise ValueError(f"relax must be a number in (0, 1), not {self.relax!r}")

    def format_of(self, cls: str):
        """FP8 format (:class:`~sim.formats.FPFormat`) of a tensor class."""
        if cls not in TENSOR_CLASSES:
            raise ValueError(f"tensor class must be one of {list(TENSOR_CLASSES)}, not {cls!r}")
        return FGMP_FORMATS[_fmt8(getattr(self, f"{cls}_format")).name]

    def flushes(self, cls: str) -> bool:
        """Whether the class stores FP8 underflow as an FP8 zero (``flush_underflow``)."""
        self.format_of(cls)
        return cls in self.flush_underflow

    def start(self, cls: str) -> int:
        """Initial and smallest ``t`` of a class."""
        if self.t_start is not None and cls in self.t_start:
            return int(self.t_start[cls])
        return self.format_of(cls).man_bits + 1

    def budget(self, cls: str) -> float:
        self.format_of(cls)
        return getattr(self, f"budget_{cls}")


class FgmpController:
    """Per-group thresholds and their feedback loop (see the module docstring).

    Parameters
    ----------
    policy : FgmpPolicy
    groups : dict, optional
        ``(layer, class) -> group key`` for layers that read one stored tensor; any pair not
        listed is its own group ``(layer, class)``.

    Attributes
    ----------
    history : list of dict
        One entry per committed training step of a layer: ``layer``, ``step`` (the layer's
        training-step index), ``t``, ``fp8_share`` and ``error`` per class (share over the GEMM
        operands of that class the layer read in the step and the dW it stored, error the worst
        report; ``None`` when nothing was measured).
    decisions : list of dict
        Every change of ``t``: ``group``, ``step``, ``old``, ``new``, ``error``.
    """

    def __init__(self, policy: FgmpPolicy, *, groups: dict | None = None):
        if not isinstance(policy, FgmpPolicy):
            raise ValueError(f"policy must be an FgmpPolicy, not {policy!r}")
        self.policy = policy
        self.groups = dict(groups or {})
        for member, key in self.groups.items():
            if not (isinstance(member, tuple) and len(member) == 2):
                raise ValueError(f"groups keys must be (layer, class) pairs, not {member!r}")
            policy.format_of(member[1])
        self._t: dict = {}                 # group -> t in effect
        self._lead: dict = {}              # group -> layer that commits its decisions
        self._window: dict = {}            # group -> {layer step: worst error}
        self._pending: dict = {}           # layer -> reports since its last forward
        self._backward_seen: dict = {}     # layers with a backward GEMM since their forward
        self._steps: dict = {}             # layer -> committed training steps
        self._order: dict = {}             # layer -> index of its first report
        self.history: list[dict] = []
        self.decisions: list[dict] = []

    def group(self, layer: str, cls: str):
        self.policy.format_of(cls)
        return self.groups.get((layer, cls), (layer, cls))

    def t(self, layer: str, cls: str) -> int:
        """Threshold in effect for ``layer``'s tensors of class ``cls``."""
        key = self.group(layer, cls)
        if key not in self._t:
            self._t[key] = self.policy.start(cls)
            self._lead[key] = layer
        return self._t[key]

    # -- reports from the backend --------------------------------------------------------------
    def begin_forward(self, layer: str) -> None:
        """A forward GEMM of ``layer`` starts: close its previous step (commit it if a backward
        pass followed, discard it if it was evaluation), then make pending decisions."""
        reports = self._pending.pop(layer, [])
        if layer in self._backward_seen:
            del self._backward_seen[layer]
            self._commit(layer, reports)

    def report(self, layer: str, kind: str, cls: str, *, t: int, error: float | None, fp8: int,
               elements: int) -> None:
        """One operand (or stored output) of one GEMM of ``layer``: the threshold it was stored
        with, its relative output error (None if not measured) and its FP8 element count."""
        self._order.setdefault(layer, len(self._order))
        if kind != "forward":
            self._backward_seen.setdefault(layer, None)
        self._pending.setdefault(layer, []).append((cls, error, fp8, elements, t))

    def flush(self) -> None:
        """Commit every layer whose last step had a backward pass (end of training), in the
        order of their first backward GEMM."""
        for layer in sorted(self._backward_seen, key=self._order.__getitem__):
            self.begin_forward(layer)

    def _commit(self, layer: str, reports: list) -> None:
        step = self._steps.get(layer, 0)
        self._steps[layer] = step + 1
        entry = {"layer": layer, "step": step, "t": {}, "fp8_share": {}, "error": {}}
        for cls in TENSOR_CLASSES:
            mine = [r for r in reports if r[0] == cls]
            if not mine:
                continue
            errors = [r[1] for r in mine if r[1] is not None]
            worst = max(errors) if errors else None
            elements = sum(r[3] for r in mine)
            entry["t"][cls] = mine[-1][4]
            entry["fp8_share"][cls] = sum(r[2] for r in mine) / elements if elements else 0.0
            entry["error"][cls] = worst
            key = self.group(layer, cls)
            if worst is not None:
                # the group's error in a step is the worst report of its member layers
                window = self._window.setdefault(key, {})
                window[step] = max(window.get(step, 0.0), worst)
            if self._lead.get(key) == layer:
                self._decide(key, cls, step + 1)
        self.history.append(entry)

    def _decide(self, key, cls: str, steps_done: int) -> None:
        if not self.policy.adaptive or steps_done % self.policy.interval:
            return
        window = self._window.pop(key, None)
        if not window:
            return
        error = sum(window.values()) / len(window)
        old = self._t[key]
        budget = self.policy.budget(cls)
        new = old
        if error > budget and old < T_MAX:
            new = old + 1
        elif error < self.policy.relax * budget and old > self.policy.start(cls):
            new = old - 1
        if new != old:
            self._t[key] = new
            self.decisions.append({"group": "/".join(key) if isinstance(key, tuple) else key,
                                   "class": cls, "step": steps_done, "old": old, "new": new,
                                   "error": error})
