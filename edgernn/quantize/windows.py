"""Flatten over a fixed window, for the firmware: each ``Flatten -> Dense`` as the Conv1D it equals.

A classifier over a fixed window of ``W`` rows (``Conv1D -> MaxPooling1D -> Flatten -> Dense``)
flattens its ``(W, C)`` rows timestep-major (``f[t * C + c] = x[t, c]``, :class:`edgernn.ir.Flatten`)
and multiplies by the Dense's ``kernel (W * C, units)``:

    y[u] = act(bias[u] + sum_{t, c} x[t, c] * kernel[t * C + c, u])

which is a valid ``Conv1D(units, kernel_size=W)`` of ``kernel.reshape(W, C, units)`` on those
rows. The firmware steps it as one: the convolution's ring keeps the last ``W - 1`` rows, nothing
is emitted until ``W`` rows have come since reset, and from then on every step (every row of the
Flatten's input, behind a strided layer) emits the Dense's output on the last ``W`` rows: a
sliding window. The step that fills the window after a reset is ``predict`` on that window; a
later step equals ``predict`` on its window only where nothing before the Flatten carries state
from earlier rows (a causal convolution or a recurrent layer does), so a tumbling-window
classifier resets between windows. (The float32 :class:`edgernn.Stream` refuses a Flatten over
time: ``predict`` on every prefix has no such meaning.)

The rewrite is the firmware's, made where quantization starts (:func:`edgernn.quantize.quantize`,
:func:`~.spec.supported_problems`, :func:`~.spec.build`); the converted model keeps its Flatten.
A Flatten over time that a Dense alone does not read stays as it is, and is refused by name.
"""

from __future__ import annotations

from .. import ir


def _flattens_over_time(spec: ir.ModelSpec):
    return [node for node in spec.nodes if isinstance(node.op, ir.Flatten) and spec.tensor_shape(node.inputs[0])[0] == 3]


def flatten_problem(spec: ir.ModelSpec, node: ir.Node) -> str | None:
    """Why the Flatten over time ``node`` cannot become a window for the firmware, or None."""
    readers = [other for other in spec.nodes if node.outputs[0] in other.inputs]
    if node.outputs[0] in spec.outputs or len(readers) != 1 or not isinstance(readers[0].op, ir.Dense):
        return (f"layer {node.op.name!r} is Flatten over time, which the firmware runs only as the window a "
                "Dense alone reads (Flatten -> Dense)")
    return None


def windowed_flattens(spec: ir.ModelSpec) -> ir.ModelSpec:
    """``spec`` with every Flatten over time that a Dense alone reads, and that Dense, replaced by the
    valid Conv1D of kernel size ``W`` = the Flatten's ``steps`` that computes the same (named as
    the Dense; its softmax, which a Conv1D cannot have, as an Activation after it named
    ``<dense>_softmax``). ``spec`` itself when it has none."""
    flattens = [node for node in _flattens_over_time(spec) if flatten_problem(spec, node) is None]
    if not flattens:
        return spec
    removed = {id(node) for node in flattens}
    dense_of = {}
    for node in flattens:
        reader = next(other for other in spec.nodes if node.outputs[0] in other.inputs)
        dense_of[id(reader)] = node
    nodes = []
    for node in spec.nodes:
        if id(node) in removed:
            continue
        flatten = dense_of.get(id(node))
        if flatten is None:
            nodes.append(node)
            continue
        dense = node.op
        steps, channels = flatten.op.steps, spec.tensor_shape(flatten.inputs[0])[1]
        softmax = dense.activation == "softmax"
        conv = ir.Conv1D(dense.name, kernel=dense.kernel.reshape(steps, channels, dense.output_size), bias=dense.bias,
                         padding="valid", activation="linear" if softmax else dense.activation)
        if not softmax:
            nodes.append(ir.Node(conv, flatten.inputs, node.outputs))
            continue
        nodes.append(ir.Node(conv, flatten.inputs, (f"{dense.name}_logits",)))
        nodes.append(ir.Node(ir.Activation(f"{dense.name}_softmax", "softmax"), (f"{dense.name}_logits",), node.outputs))
    return spec.replace(nodes=tuple(nodes))
