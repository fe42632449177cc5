"""Rewrites every importer's result goes through: a BatchNormalization (an :class:`ir.Affine`)
right after a linear map folds into that map's weights, and an activation right after a linear map
becomes that map's own.

A Conv1D or Dense without activation, ``y = x W + b``, followed by the per-feature affine
``z = y * scale + offset`` is the linear map

    z = x (W * scale) + (b * scale + offset)

(``scale`` multiplies the last, output-feature axis of W). Folded, the model has one op fewer to
run and to stream, and its answers stay within float32 rounding of the framework's (the tests
compare them). Folded only where nothing else reads the map's output: the un-normalised tensor
must not be needed elsewhere. An Affine before a map is not folded: a convolution's zero padding
would then be shifted by the offset.

Then ``Conv1D -> Activation`` (PyTorch's ``relu(bn(conv(x)))``, Keras's separate ``Activation``
layer) is one Conv1D with that activation, where the op takes it: one pass over the output fewer.
Importers emit the activation as a layer of its own and leave this fusing to the fold.

And ``Pad1D -> Conv1D`` (PyTorch's ``F.pad``/``nn.ConstantPad1d`` or a Conv1d's own explicit
padding, ONNX's ``Pad`` or a Conv's ``pads``, Keras's ``ZeroPadding1D``) is one Conv1D where one IR
padding adds those zeros for every input length: ``(k-1)*d`` zeros on the left before a valid
convolution is a causal one (which streams), the same-padding counts at stride 1 are ``same``.

Every importer folds what it returns (PyTorch's ``build``, ONNX's converter, Keras's ``load``),
whichever public entry point was called.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from .. import ir
from ._conv import conv_padding


def _readers(spec: ir.ModelSpec) -> dict:
    """tensor name -> how many times nodes or the model's outputs read it."""
    counts: dict = {}
    for node in spec.nodes:
        for name in node.inputs + node.initial_state + ((node.mask,) if node.mask else ()):
            counts[name] = counts.get(name, 0) + 1
    for name in spec.outputs:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _sole_reader(producer, nodes: list, node: ir.Node, readers: dict, kinds: tuple) -> bool:
    """Whether ``node`` (without a mask) alone reads the one output of ``nodes[producer]``, an op of
    one of ``kinds``."""
    if producer is None or node.mask is not None or readers.get(node.inputs[0]) != 1:
        return False
    made = nodes[producer]
    return isinstance(made.op, kinds) and len(made.outputs) == 1


def _linear(producer, nodes: list, node: ir.Node, readers: dict) -> bool:
    """Whether ``node`` alone reads a Conv1D or Dense without activation."""
    return (_sole_reader(producer, nodes, node, readers, (ir.Conv1D, ir.Dense))
            and nodes[producer].op.activation == "linear")


def _fixed_padding(conv: ir.Conv1D) -> Optional[tuple[int, int]]:
    """The zeros ``conv`` adds (left, right) where they do not depend on the input's length."""
    if conv.padding == "same" and conv.strides != 1:
        return None
    return conv.padding_of(1)


def _pad_into_conv(pad: ir.Pad1D, conv: ir.Conv1D) -> Optional[ir.Conv1D]:
    """``conv`` padding its input as ``pad`` and then itself do together, where one IR padding does
    exactly that (:func:`._conv.conv_padding`); else None."""
    own = _fixed_padding(conv)
    if own is None or pad.left < 0 or pad.right < 0:
        return None
    padding = conv_padding(pad.left + own[0], pad.right + own[1], conv.span, conv.strides)
    return None if padding is None else dataclasses.replace(conv, padding=padding)


def fold_into_linear_maps(spec: ir.ModelSpec) -> ir.ModelSpec:
    """``spec`` with each Affine folded into the Conv1D or Dense (activation linear, one output)
    whose output it alone reads, each activation into such a map (where the op takes it), and each
    Pad1D of zeros into the Conv1D that alone reads it (where one IR padding does both); a folded op
    keeps the name of the op before it and takes the later one's output."""
    readers = _readers(spec)
    made_by = {}
    nodes: list = []
    for node in spec.nodes:
        producer = made_by.get(node.inputs[0]) if len(node.inputs) == 1 else None
        merged = None
        if isinstance(node.op, ir.Affine) and _linear(producer, nodes, node, readers):
            linear = nodes[producer].op
            scale = np.asarray(node.op.scale, np.float64)
            bias = 0.0 if linear.bias is None else np.asarray(linear.bias, np.float64)
            merged = dataclasses.replace(linear, kernel=ir.as_weight(np.asarray(linear.kernel, np.float64) * scale),
                                         bias=ir.as_weight(bias * scale + np.asarray(node.op.offset, np.float64)))
        elif isinstance(node.op, ir.Activation) and _linear(producer, nodes, node, readers):
            linear = nodes[producer].op
            allowed = ir.ELEMENTWISE_ACTIVATIONS if isinstance(linear, ir.Conv1D) else ir.ACTIVATION_IDS
            if node.op.activation in allowed:
                merged = dataclasses.replace(linear, activation=node.op.activation)
        elif isinstance(node.op, ir.Conv1D) and _sole_reader(producer, nodes, node, readers, (ir.Pad1D,)):
            merged = _pad_into_conv(nodes[producer].op, node.op)
            if merged is not None:  # the convolution, reading what the Pad1D read, in its place
                nodes[producer] = dataclasses.replace(node, op=merged, inputs=nodes[producer].inputs)
                made_by[node.outputs[0]] = producer
                continue
        elif (isinstance(node.op, ir.Pad1D) and _sole_reader(producer, nodes, node, readers, (ir.Pad1D,))
              and min(node.op.left, node.op.right, nodes[producer].op.left, nodes[producer].op.right) >= 0):
            first = nodes[producer].op
            merged = dataclasses.replace(first, left=first.left + node.op.left, right=first.right + node.op.right)
        if merged is not None:
            nodes[producer] = dataclasses.replace(nodes[producer], op=merged, outputs=node.outputs)
            made_by[node.outputs[0]] = producer
            continue
        for name in node.outputs:
            made_by[name] = len(nodes)
        nodes.append(node)
    return spec if len(nodes) == len(spec.nodes) else spec.replace(nodes=tuple(nodes))


def with_flatten_steps(spec: ir.ModelSpec) -> ir.ModelSpec:
    """``spec`` with its one sequence input given the length a Flatten of a sequence fixes
    (:func:`edgernn.graph.flatten_steps`), where the source declared none: PyTorch's modules, ONNX
    graphs with a dynamic time axis. Verification runs the source at that length."""
    from ..graph import flatten_steps

    sequences = [i for i in spec.inputs if i.rank == 3]
    if len(sequences) != 1 or sequences[0].timesteps is not None:
        return spec
    steps = flatten_steps(spec, sequences[0].name)
    if steps is None:
        return spec
    inputs = tuple(dataclasses.replace(i, timesteps=steps) if i is sequences[0] else i for i in spec.inputs)
    return spec.replace(inputs=inputs)
