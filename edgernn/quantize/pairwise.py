"""Merges of three or more tensors, for the firmware: each as merges of two.

The firmware's merge layer reads two tensors (``ernn_merge.c``). Keras folds a merge of n tensors
left to right (``Add()([a, b, c])`` is ``(a + b) + c``; :func:`edgernn.graph.merge`), so the same
fold of two-input merges computes the same in float32, bit for bit, for Add, Multiply, Maximum,
Minimum and Concatenate (over features, the parts side by side in order). Average of n is the
fold of Adds, then ``* (1 / n)`` (an :class:`edgernn.ir.Affine`: within a rounding of Keras's
division by n). In int8 each two-input merge has the scale of its own calibrated range.

Like the window of :mod:`.windows`, the rewrite is the firmware's, made where quantization starts
(:func:`firmware_form`); the converted model keeps its merges as they are.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir
from .windows import windowed_flattens


def firmware_form(spec: ir.ModelSpec) -> ir.ModelSpec:
    """``spec`` as the firmware steps it: Flatten -> Dense windows as convolutions (:mod:`.windows`),
    merges of n > 2 tensors as n - 1 merges of two."""
    return pairwise_merges(windowed_flattens(spec))


def pairwise_merges(spec: ir.ModelSpec) -> ir.ModelSpec:
    """``spec`` with every Merge or Concatenate of n > 2 inputs folded left into n - 1 of two inputs
    (named ``<name>_1``, ... and the last ``<name>``; an average's sums ``<name>_sum_1``, ... and
    its ``1 / n`` the Affine ``<name>``); ``spec`` itself when it has none."""
    if not any(isinstance(node.op, ir.MULTI_INPUT_OPS) and len(node.inputs) > 2 for node in spec.nodes):
        return spec
    names = {node.op.name for node in spec.nodes} | {t for node in spec.nodes for t in node.outputs}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        return name

    nodes = []
    for node in spec.nodes:
        op = node.op
        if not (isinstance(op, ir.MULTI_INPUT_OPS) and len(node.inputs) > 2):
            nodes.append(node)
            continue
        average = isinstance(op, ir.Merge) and op.mode == "average"
        base = f"{op.name}_sum" if average else op.name
        pair = ir.Merge(base, "add") if average else op
        current = node.inputs[0]
        for k, other in enumerate(node.inputs[1:], 1):
            last = k == len(node.inputs) - 1 and not average
            name = op.name if last else fresh(f"{base}_{k}")
            out = node.outputs if last else (fresh(f"{name}:0"),)
            nodes.append(dataclasses.replace(node, op=dataclasses.replace(pair, name=name), inputs=(current, other),
                                             outputs=out))
            current = out[0]
        if average:
            features = spec.tensor_shape(node.outputs[0])[1]
            scale = ir.as_weight(np.full(features, 1.0 / len(node.inputs)))
            nodes.append(dataclasses.replace(node, op=ir.Affine(op.name, scale, ir.as_weight(np.zeros(features))),
                                             inputs=(current,)))
    return spec.replace(nodes=tuple(nodes))
