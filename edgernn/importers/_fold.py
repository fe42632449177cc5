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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir


def _readers(spec: ir.ModelSpec) -> dict:
    """tensor name -> how many times nodes or the model's outputs read it."""
    counts: dict = {}
    for node in spec.nodes:
        for name in node.inputs + node.initial_state + ((node.mask,) if node.mask else ()):
            counts[name] = counts.get(name, 0) + 1
    for name in spec.outputs:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _takes(producer, nodes: list, node: ir.Node, readers: dict) -> bool:
    """Whether ``nodes[producer]`` is a linear Conv1D or Dense whose one output only ``node`` (an
    activation) reads, and whose op accepts that activation."""
    if producer is None or node.mask is not None or readers.get(node.inputs[0]) != 1:
        return False
    linear = nodes[producer]
    if not isinstance(linear.op, (ir.Conv1D, ir.Dense)) or linear.op.activation != "linear" or len(linear.outputs) != 1:
        return False
    allowed = ir.ELEMENTWISE_ACTIVATIONS if isinstance(linear.op, ir.Conv1D) else ir.ACTIVATION_IDS
    return node.op.activation in allowed


def fold_into_linear_maps(spec: ir.ModelSpec) -> ir.ModelSpec:
    """``spec`` with each Affine folded into the Conv1D or Dense (activation linear, one output)
    whose output it alone reads; the folded op keeps its name and takes the Affine's output."""
    readers = _readers(spec)
    made_by = {}
    nodes: list = []
    for node in spec.nodes:
        producer = made_by.get(node.inputs[0]) if len(node.inputs) == 1 else None
        if (isinstance(node.op, ir.Affine) and node.mask is None and producer is not None
                and isinstance(nodes[producer].op, (ir.Conv1D, ir.Dense)) and nodes[producer].op.activation == "linear"
                and len(nodes[producer].outputs) == 1 and readers.get(node.inputs[0]) == 1):
            linear = nodes[producer]
            scale = np.asarray(node.op.scale, np.float64)
            bias = 0.0 if linear.op.bias is None else np.asarray(linear.op.bias, np.float64)
            folded = dataclasses.replace(linear.op, kernel=ir.as_weight(np.asarray(linear.op.kernel, np.float64) * scale),
                                         bias=ir.as_weight(bias * scale + np.asarray(node.op.offset, np.float64)))
            nodes[producer] = dataclasses.replace(linear, op=folded, outputs=node.outputs)
            made_by[node.outputs[0]] = producer
            continue
        if isinstance(node.op, ir.Activation) and _takes(producer, nodes, node, readers):
            linear = nodes[producer]
            nodes[producer] = dataclasses.replace(
                linear, op=dataclasses.replace(linear.op, activation=node.op.activation), outputs=node.outputs)
            made_by[node.outputs[0]] = producer
            continue
        for name in node.outputs:
            made_by[name] = len(nodes)
        nodes.append(node)
    return spec if len(nodes) == len(spec.nodes) else spec.replace(nodes=tuple(nodes))
