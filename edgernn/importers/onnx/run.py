"""Running the source: the ``.onnx`` file on edgernn's inputs, its outputs as edgernn's.

:func:`run_source` (conversion verification) runs the file with onnxruntime, or where onnxruntime
refuses it (``layout=1``) with onnx's reference evaluator, or onnxruntime on the model rewritten to
``layout=0`` when that evaluator ignores what the nodes use (activations, clip); static time and batch sizes the
graph declares are recorded (``Input.timesteps``, ``source["batch_size"]``) for its data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import UnknownOption
from .container import _attrs, _read
from .converter import io_layout


def to_onnx_input(array: np.ndarray, roles: list) -> np.ndarray:
    """An edgernn input ((batch, T, F) or (batch, F)) laid out as the ONNX graph input ``roles`` says."""
    canonical = [r for r in ("B", "T") if r in roles] + ["F"]
    moved = np.transpose(array, [canonical.index(r) for r in roles if r != "U"])
    for i, r in enumerate(roles):
        if r == "U":
            moved = np.expand_dims(moved, i)
    return moved


def to_edgernn_output(array: np.ndarray, layout) -> list:
    """An ONNX output as the edgernn output(s) it maps to (a stack gives one array per item)."""
    kind = layout[0]
    if kind == "stack":
        _, axis, items = layout
        out, start = [], 0
        for size, item in items:
            part = np.take(array, range(start, start + size), axis=axis)
            out.extend(to_edgernn_output(part, item))
            start += size
        return out
    _, roles, factors = layout
    roles = [tuple(r) if isinstance(r, list) else r for r in roles]
    keep = [i for i, r in enumerate(roles) if r != "U"]
    array = array.reshape([array.shape[i] for i in keep])
    roles = [roles[i] for i in keep]
    order = [roles.index("B")] + ([roles.index("T")] if "T" in roles else [])
    features = sorted((i for i, r in enumerate(roles) if isinstance(r, tuple)), key=lambda i: roles[i][1])
    array = np.transpose(array, order + features)
    return [array.reshape(array.shape[:len(order)] + (int(np.prod(factors)),))]


# What onnx's reference evaluator (onnx.reference) implements of the recurrent nodes: its LSTM and
# GRU ignore ``activations``, ``clip`` and ``input_forget``; its RNN knows Tanh and Affine only.
_REFERENCE_DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _reference_problem(model) -> Optional[str]:
    """Why onnx's reference evaluator would compute ``model``'s recurrent nodes wrongly, or None."""
    for node in model.graph.node:
        defaults = _REFERENCE_DEFAULTS.get(node.op_type)
        if defaults is None:
            continue
        attrs = _attrs(node)
        names = [a.lower() for a in attrs.get("activations", [])]
        if any(n != d.lower() for n, d in zip(names, defaults * 2)) or attrs.get("clip") is not None \
                or attrs.get("input_forget", 0):
            return (f"node {node.name or node.output[0]!r} ({node.op_type}) uses activations, clip or input_forget, "
                    "which onnx's reference evaluator does not implement")
    return None


def _as_layout_0(model):
    """A copy of ``model`` whose ``layout=1`` recurrent nodes are ``layout=0`` nodes between
    Transposes (X and initial states (batch, ...) -> (T or dirs, batch, ...); Y (T, dirs, batch, H)
    -> (batch, T, dirs, H), Y_h/Y_c (dirs, batch, H) -> (batch, dirs, H)), or None if it has none."""
    import onnx
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes, changed = [], False
    for node in copy.graph.node:
        if node.op_type not in _REFERENCE_DEFAULTS or not _attrs(node).get("layout", 0):
            nodes.append(node)
            continue
        changed = True
        inputs, outputs = list(node.input), list(node.output)
        for k in (0, 5, 6):  # X, initial_h, initial_c
            if k < len(inputs) and inputs[k]:
                nodes.append(helper.make_node("Transpose", [inputs[k]], [inputs[k] + "__layout0"], perm=[1, 0, 2]))
                inputs[k] += "__layout0"
        after = []
        for k, name in enumerate(outputs):
            if name:
                after.append(helper.make_node("Transpose", [name + "__layout0"], [name],
                                              perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2]))
                outputs[k] = name + "__layout0"
        attributes = [a for a in node.attribute if a.name != "layout"]
        rewritten = helper.make_node(node.op_type, inputs, outputs, name=node.name)
        rewritten.attribute.extend(attributes)
        nodes += [rewritten] + after
    if not changed:
        return None
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _source_runner(source):
    """``(run(output_names, feeds), {input name: shape}, runtime name)`` for the ``.onnx`` file:
    onnxruntime's CPU session; when onnxruntime refuses the model (its CPU LSTM/GRU/RNN kernels refuse
    ``layout=1``), onnx's own reference evaluator (``onnx.reference``, an independent NumPy
    implementation of the operators) if it implements the model's recurrent nodes, else onnxruntime
    on the model with its ``layout=1`` nodes rewritten to ``layout=0`` between Transposes."""
    import onnx
    import onnxruntime
    from importlib import metadata

    def session_of(model_or_path):
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # a refusal is reported in the verification record, not on stderr
        return onnxruntime.InferenceSession(model_or_path, options, providers=["CPUExecutionProvider"])

    ort = f"onnxruntime {metadata.version('onnxruntime')}"
    try:
        session = session_of(str(source))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's Fail/NotImplemented/InvalidGraph
        from onnx.reference import ReferenceEvaluator

        found = re.search(r"[^.:]*not supported[^.]*", str(exc))
        refused = (found.group(0) if found else str(exc) or type(exc).__name__).strip()[:200]
        model = _read(Path(source))
        shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                  for v in model.graph.input}
        problem = _reference_problem(model)
        if problem is None:
            name = f"onnx {onnx.__version__} reference evaluator (onnxruntime refuses the model: {refused})"
            return ReferenceEvaluator(model).run, shapes, name
        rewritten = _as_layout_0(model)
        if rewritten is None:
            raise RuntimeError(f"onnxruntime refuses the model ({refused}) and {problem}") from exc
        session = session_of(rewritten.SerializeToString())
        return session.run, shapes, (f"{ort} on the model rewritten to layout=0 (onnxruntime refuses layout=1, "
                                     f"and {problem})")
    return session.run, {info.name: info.shape for info in session.get_inputs()}, ort


def source_runtime(source) -> str:
    """The runtime :func:`run_source` runs ``source`` with (named in the verification record)."""
    return _source_runner(source)[2]


def run_source(source, inputs, **options) -> list[np.ndarray]:
    """Run the ``.onnx`` file on ``inputs`` (edgernn's shapes, one array per input of the converted
    model) with onnxruntime, or onnx's reference evaluator where onnxruntime refuses the model (see
    :func:`source_runtime`); returns what the converted model's ``predict`` returns, as a list."""
    if options:
        raise UnknownOption("run_source", options)
    layout = io_layout(source)
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    inputs = [np.asarray(x, np.float32) for x in inputs]
    run, shapes, _ = _source_runner(source)
    wanted = [name for name, _ in layout.outputs]
    # A graph exported without a dynamic batch axis runs only at its own batch size: run the rows
    # in chunks of that size (the last one padded with zeros) and keep the real rows.
    fixed = None
    for name, roles in layout.inputs:
        if "B" in roles and isinstance(shapes[name][roles.index("B")], int):
            fixed = shapes[name][roles.index("B")]
    total = inputs[0].shape[0]
    chunk = fixed or total
    pieces: list[list[np.ndarray]] = []
    for start in range(0, max(total, 1), max(chunk, 1)):
        part = [x[start : start + chunk] for x in inputs]
        rows = part[0].shape[0]
        if rows < chunk:
            part = [np.concatenate([p, np.zeros((chunk - rows,) + p.shape[1:], np.float32)]) for p in part]
        feeds = {name: to_onnx_input(x, roles).astype(layout.codes.get(name, np.float32))
                 for (name, roles), x in zip(layout.inputs, part)}
        results = run(wanted, feeds)
        out = []
        for (name, item_layout), array in zip(layout.outputs, results):
            out.extend(to_edgernn_output(np.asarray(array, np.float32), item_layout))
        pieces.append([o[:rows] for o in out])
    return [np.concatenate(parts) for parts in zip(*pieces)]
