"""What the PyTorch and ONNX importers share for the convolutional front-end, both laid out
``(N, C, T)``: the weight layout, how explicit padding becomes the IR's, the channel-major flatten,
and BatchNormalization at inference (which the Keras importer shares too).

Padding. PyTorch and ONNX pad each end of the time axis by a given count, ``(left, right)``; the
IR's Conv1D pads ``valid`` ``(0, 0)``, ``causal`` ``(span - 1, 0)`` or ``same`` (at stride 1,
``((span - 1) // 2, span // 2)`` whatever T). Counts that are one of those become that padding (so a
left-padded causal convolution streams); any others become an ``ir.Pad1D`` of zeros and a valid
convolution, which ``predict`` runs (a stream refuses the Pad1D). :func:`conv_padding` is the one
classification; :mod:`._fold` uses it too, to take a Pad1D made by a separate layer (``F.pad``,
``nn.ConstantPad1d``, an ONNX ``Pad``, Keras's ``ZeroPadding1D``) into the convolution after it.

Pooling pads differently: a max pooling's pads are ``-inf`` (never the max), so they are exactly
the IR's ``same`` pooling (pads left out of the reduction) where the counts are same's, and
nothing else the IR has; an average pooling that counts its pads in the divisor
(``count_include_pad``) is a Pad1D of zeros and a valid pooling, one that does not is ``same`` where
the counts are same's.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import ir


def conv_kernel(weight) -> np.ndarray:
    """A ``(out, in / groups, k)`` weight (PyTorch's, ONNX's) as the IR's ``(k, in / groups, out)``."""
    return ir.as_weight(np.transpose(np.asarray(weight), (2, 1, 0)))


def conv_padding(left: int, right: int, span: int, strides: int) -> Optional[str]:
    """The IR Conv1D padding that adds exactly ``left`` and ``right`` zeros for every input length,
    for a window of ``span`` steps: ``"valid"``, ``"causal"``, ``"same"`` (stride 1 only: at a larger
    stride same's counts depend on T), or None."""
    if (left, right) == (0, 0):
        return "valid"
    if (left, right) == (span - 1, 0):
        return "causal"
    if strides == 1 and (left, right) == ir.same_padding(1, span, 1):
        return "same"
    return None


def conv_ops(name: str, weight, bias, strides: int, dilation: int, groups: int,
             left: int, right: int) -> list:
    """The IR ops of a convolution of a ``(out, in / groups, k)`` ``weight`` padded ``(left, right)``:
    one Conv1D where :func:`conv_padding` names the padding, else ``Pad1D`` (``<name>_pad``) and a
    valid Conv1D."""
    span = (int(np.shape(weight)[2]) - 1) * dilation + 1
    padding = conv_padding(left, right, span, strides)
    conv = ir.Conv1D(name, conv_kernel(weight), None if bias is None else ir.as_weight(bias), strides,
                     padding or "valid", dilation, groups)
    return [conv] if padding else [ir.Pad1D(f"{name}_pad", left, right), conv]


def pool_ops(name: str, kind: str, size: int, strides: int, left: int, right: int, pads_counted: bool):
    """The IR ops of a windowed pooling padded ``(left, right)``, or a string saying why there are none.

    ``pads_counted``: an average pooling whose divisor counts the pads (PyTorch's
    ``count_include_pad=True``, ONNX's ``count_include_pad=1``); a max pooling's pads never count.
    """
    if (left, right) == (0, 0):
        return [ir.Pooling1D(name, kind, size, strides)]
    if kind == "average" and pads_counted:
        return [ir.Pad1D(f"{name}_pad", left, right), ir.Pooling1D(name, kind, size, strides)]
    if strides == 1 and (left, right) == ir.same_padding(1, size, 1):
        return [ir.Pooling1D(name, kind, size, strides, "same")]
    same = ir.same_padding(1, size, 1)
    pads = "its -inf pads" if kind == "max" else "pads left out of the average"
    return (f"{pads} convert only as the IR's 'same' pooling: stride 1 and pads {list(same)}, here pads "
            f"{[left, right]} with stride {strides}")


def time_major_rows(kernel, channels: int) -> np.ndarray:
    """An ``(in, out)`` kernel of a dense layer after a channel-major flatten of ``(N, C, T)``
    (PyTorch's and ONNX's: row ``c * T + t``), its rows put in the IR Flatten's time-major order
    (``t * C + c``)."""
    kernel = np.asarray(kernel)
    rows = kernel.shape[0]
    return kernel.reshape(channels, rows // channels, -1).transpose(1, 0, 2).reshape(rows, -1)


def batch_norm(name: str, mean, variance, epsilon: float, gamma=None, beta=None) -> ir.Affine:
    """BatchNormalization at inference, ``y = (x - mean) / sqrt(variance + epsilon) * gamma + beta``
    per channel, as ``ir.Affine``: ``scale = gamma / sqrt(variance + epsilon)``,
    ``offset = beta - mean * scale`` (in float64; gamma 1 and beta 0 where None)."""
    scale = 1.0 / np.sqrt(np.asarray(variance, np.float64).reshape(-1) + float(epsilon))
    if gamma is not None:
        scale = scale * np.asarray(gamma, np.float64).reshape(-1)
    offset = -np.asarray(mean, np.float64).reshape(-1) * scale
    if beta is not None:
        offset = offset + np.asarray(beta, np.float64).reshape(-1)
    return ir.Affine(name, ir.as_weight(scale), ir.as_weight(offset))
