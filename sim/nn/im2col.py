"""im2col and col2im for NHWC tensors (square kernel, stride, symmetric zero padding).

The im2col matrix has one row per output pixel ``(b, y, x)`` and its columns ordered
``(ky, kx, c)``: the order the GEMM's k loop walks, so it is part of the numerics. im2col is a
pure gather (it works on encoded operands of any dtype; padding is the all-zero pattern, +0);
col2im adds the kernel taps of each input pixel in fp32, starting from +0, taps in ``(ky, kx)``
ascending order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv_out_size", "im2col", "col2im", "transposed_weight"]


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output height/width of a convolution."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, *, kernel: int, stride: int, padding: int) -> np.ndarray:
    """``(B, H, W, C)`` -> ``(B * Ho * Wo, kernel * kernel * C)`` (a copy)."""
    batch, height, width, channels = x.shape
    out_h = conv_out_size(height, kernel, stride, padding)
    out_w = conv_out_size(width, kernel, stride, padding)
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = np.empty((batch, out_h, out_w, kernel, kernel, channels), dtype=x.dtype)
    for ky in range(kernel):
        for kx in range(kernel):
            cols[:, :, :, ky, kx, :] = x[:, ky:ky + stride * out_h:stride,
                                         kx:kx + stride * out_w:stride, :]
    return cols.reshape(batch * out_h * out_w, kernel * kernel * channels)


def col2im(cols: np.ndarray, *, shape: tuple[int, int, int, int], kernel: int, stride: int,
           padding: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: float32 ``(B * Ho * Wo, kernel * kernel * C)`` ->
    ``(B, H, W, C)`` = ``shape``, each pixel the fp32 sum of its taps in tap order."""
    batch, height, width, channels = shape
    out_h = conv_out_size(height, kernel, stride, padding)
    out_w = conv_out_size(width, kernel, stride, padding)
    cols = cols.reshape(batch, out_h, out_w, kernel, kernel, channels)
    padded = np.zeros((batch, height + 2 * padding, width + 2 * padding, channels),
                      dtype=np.float32)
    for ky in range(kernel):
        for kx in range(kernel):
            padded[:, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride, :] += \
                cols[:, :, :, ky, kx, :]
    return np.ascontiguousarray(padded[:, padding:padding + height, padding:padding + width, :])


def transposed_weight(weight: np.ndarray, *, kernel: int, channels: int) -> np.ndarray:
    """The weight of the backward-data pass of a stride-1 convolution lowered as a transposed
    convolution: ``dX = im2col(dY, kernel, 1, kernel - 1 - padding) . W'`` with ``W'`` of
    ``(kernel * kernel * C_out, C_in)``, rows ``(ky, kx, co)``, ``W'[(ky, kx, co), ci] =
    W[(kernel - 1 - ky, kernel - 1 - kx, ci), co]`` (the kernel flipped). ``weight`` is the
    layer's ``(kernel * kernel * C_in, C_out)`` (any dtype: a gather), ``channels`` = C_in."""
    out_channels = weight.shape[1]
    if weight.shape[0] != kernel * kernel * channels:
        raise ValueError(f"weight must have kernel * kernel * channels = "
                         f"{kernel * kernel * channels} rows, not {weight.shape[0]}")
    taps = weight.reshape(kernel, kernel, channels, out_channels)[::-1, ::-1]
    return np.ascontiguousarray(taps.transpose(0, 1, 3, 2)).reshape(
        kernel * kernel * out_channels, channels)
