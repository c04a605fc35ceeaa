"""A network: a chain of layers, its specs with masks wired, its GEMM commands."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..lowering import LayerSpec, check_chain, network_commands
from .layers import BasicBlock, Dropout, Flatten, GlobalAvgPool, Layer, ReLU, StepContext

__all__ = ["Network"]


class Network:
    """Layers applied in order to ``(batch,) + input_shape`` float32 inputs.

    Parameters
    ----------
    name : str
    layers : list of Layer
        Each layer's ``in_shape`` must be the previous layer's ``out_shape`` (the first one's,
        ``input_shape``); a layer made without it takes it from there (:meth:`Layer.bind`).
        Layer names (including those inside blocks) must be unique.
    input_shape : tuple of int
        Per-sample input shape.
    """

    def __init__(self, *, name: str, layers: list[Layer], input_shape: tuple[int, ...]):
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise ValueError(f"layers must be a non-empty list of Layer, not {layers!r}")
        shape = tuple(input_shape)
        for layer in layers:             # unbound layers take the previous output shape
            if not layer.bound:
                layer.bind(shape)
            shape = layer.out_shape
        check_chain(layers, input_shape=tuple(input_shape))
        names = [sub.name for layer in layers for sub in layer.sublayers()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"layer names must be unique, not repeated: {repeated}")
        self.name = name
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)

    def forward(self, x: np.ndarray, ctx: StepContext) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, ctx)
        return x

    def backward(self, dy: np.ndarray, ctx: StepContext) -> None:
        for layer in reversed(self.layers):
            dy = layer.backward(dy, ctx)
            if dy is None:          # the layers before need no gradient (no weights)
                break

    def all_layers(self) -> list[Layer]:
        """Every plain layer, blocks expanded, in forward order."""
        return [sub for layer in self.layers for sub in layer.sublayers()]

    def weight_layers(self) -> list[Layer]:
        """The layers with weights (the ones that lower to GEMMs)."""
        return [layer for layer in self.all_layers() if layer.params]

    def parameters(self) -> list[tuple[str, Layer, str]]:
        """``(qualified name, layer, key)`` of every trainable tensor."""
        return [(f"{layer.name}.{key}", layer, key)
                for layer in self.weight_layers() for key in layer.params]

    def specs(self) -> list[LayerSpec]:
        """Layer specs in forward order with their masks: a layer's ``output_mask`` lists the
        ReLU/dropout layers applied to its output before the next layer with weights, its
        ``input_mask`` those applied to its input."""
        specs: list[LayerSpec] = []
        producers: list[int] = []       # specs whose output is the current tensor
        current: tuple[str, ...] = ()   # masks applied to the current tensor so far

        def close():
            for index in producers:
                specs[index] = dataclasses.replace(specs[index], output_mask=current)

        for layer in self.layers:
            if isinstance(layer, (ReLU, Dropout)):
                specs.append(layer.spec)
                current += (layer.name,)
            elif isinstance(layer, Flatten):
                specs.append(layer.spec)
            elif isinstance(layer, GlobalAvgPool):
                close()                  # an average of gated values carries no mask
                specs.append(layer.spec)
                producers, current = [], ()
            elif isinstance(layer, BasicBlock):
                close()
                block_specs, block_producers, current = layer.wire(current)
                producers = [len(specs) + i for i in block_producers]
                specs.extend(block_specs)
            else:
                close()
                producers = [len(specs)]
                specs.append(dataclasses.replace(layer.spec, input_mask=current))
                current = ()
        close()
        return specs

    def commands(self, *, batch_size: int):
        """GEMM commands of one training step (:func:`sim.lowering.network_commands`)."""
        return network_commands(self.specs(), batch_size=batch_size)
