"""Evaluate a :class:`~edgernn.ir.ModelSpec` graph on whole arrays, with a pluggable numeric backend.

The same walk runs the float64 reference (:mod:`edgernn.reference`) and the float32 Numba kernels
(:mod:`edgernn.kernels`); a backend provides ``dtype``, ``recurrent_sequence``, ``dense`` and
``activate``, ``conv1d``, ``pool1d``, ``affine``, ``layer_norm`` and ``standardize`` with the signatures of :mod:`edgernn.reference`.

:func:`streamable_problem` says whether a spec can be stepped one timestep at a time: pure IR
analysis, here so that the runtime, the quantizer, ``verify``, ``summary`` and ``bench`` share it
without importing the runtime.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import ir
from .errors import InvalidInput


def _bidirectional(backend, op: ir.Bidirectional, x, mask):
    y_f, _ = backend.recurrent_sequence(op.forward, x, mask)
    y_b, _ = backend.recurrent_sequence(op.backward, x, mask)
    if op.forward.return_sequences:
        y_b = y_b[:, ::-1]  # Keras aligns the backward outputs with the forward timesteps
    if op.merge_mode == "concat":
        return np.concatenate([y_f, y_b], axis=-1)
    if op.merge_mode == "sum":
        return y_f + y_b
    if op.merge_mode == "ave":
        return (y_f + y_b) / 2
    return y_f * y_b


MERGE_UFUNCS = {"add": np.add, "multiply": np.multiply, "maximum": np.maximum, "minimum": np.minimum,
          "average": np.add, "subtract": np.subtract}


def merge(op: ir.Merge, xs: list[np.ndarray]) -> np.ndarray:
    """Keras's merge layers: the inputs folded left to right by the op (a sum divided by their count
    for ``average``), in the arrays' dtype."""
    y = xs[0]
    for x in xs[1:]:
        y = MERGE_UFUNCS[op.mode](y, x)
    return y / np.asarray(len(xs), dtype=y.dtype) if op.mode == "average" else y


def check_codes(op: ir.Embedding, codes: np.ndarray) -> None:
    """One :class:`InvalidInput` naming the layer, the first bad code and where it is, unless every
    one of ``codes`` (any shape, any numeric dtype) is an integer in ``[0, vocab)``."""
    bad = ~((codes >= 0) & (codes < op.vocab) & (codes == np.floor(codes)))  # NaN is bad too
    if bad.any():
        raise InvalidInput(f"layer {op.name!r} (Embedding) takes integer codes in [0, {op.vocab}), got "
                           f"{float(codes[bad].flat[0])} (at {tuple(int(i) for i in np.argwhere(bad)[0])})")


def _embed(op: ir.Embedding, codes: np.ndarray, dtype) -> list[np.ndarray]:
    """The vectors of ``codes (batch, T)`` (and their mask, ``codes != 0``, with ``mask_zero``); a code
    that is not an integer in ``[0, vocab)`` is refused (Keras fails on those, or reads garbage)."""
    check_codes(op, codes)
    index = codes.astype(np.intp)
    made = [np.ascontiguousarray(op.embeddings.astype(dtype, copy=False)[index])]
    return made + [index != 0] if op.mask_zero else made


def _pad(op: ir.Pad1D, x: np.ndarray) -> np.ndarray:
    """Zero timesteps added (a positive count) or timesteps removed (a negative one) at each end."""
    x = x[:, max(-op.left, 0):x.shape[1] - max(-op.right, 0)]
    return np.pad(x, ((0, 0), (max(op.left, 0), max(op.right, 0)), (0, 0)))


def execute(spec: ir.ModelSpec, inputs: list[np.ndarray], backend) -> list[np.ndarray]:
    """Run ``spec`` on ``inputs`` (one array per model input, already validated) from zero state.

    Returns one array per model output, in the backend's dtype.
    """
    env = {i.name: np.ascontiguousarray(x, dtype=backend.dtype) for i, x in zip(spec.inputs, inputs)}
    _check_lengths(spec, {i.name: x.shape[1] for i, x in zip(spec.inputs, inputs) if i.rank == 3 or i.dtype == "int"})
    for node in spec.nodes:
        op = node.op
        x = env[node.inputs[0]]
        mask = env[node.mask] if node.mask else None
        if isinstance(op, ir.Merge):
            made = [merge(op, [env[n] for n in node.inputs])]
        elif isinstance(op, ir.Embedding):
            made = _embed(op, x, backend.dtype)
        elif isinstance(op, ir.Concatenate):
            made = [np.concatenate([env[n] for n in node.inputs], axis=-1 if op.axis == "features" else 1)]
        elif isinstance(op, ir.Recurrent):
            initial = [env[n] for n in node.initial_state] or None
            y, states = backend.recurrent_sequence(op, x, mask, initial)
            made = [y, *states][: len(node.outputs)]
        elif isinstance(op, ir.Bidirectional):
            made = [_bidirectional(backend, op, x, mask)]
        elif isinstance(op, ir.Dense):
            made = [backend.dense(op, x)]
        elif isinstance(op, ir.Activation):
            made = [backend.activate(op.activation, x)]
        elif isinstance(op, ir.Masking):
            keep = np.any(x != np.asarray(op.mask_value, dtype=x.dtype), axis=-1)
            made = [x * keep[..., None].astype(x.dtype), keep]
        elif isinstance(op, ir.RepeatVector):
            made = [np.ascontiguousarray(np.repeat(x[:, None, :], op.n, axis=1))]
        elif isinstance(op, ir.Conv1D):
            made = [backend.conv1d(op, x)]
        elif isinstance(op, ir.Pooling1D):
            made = [backend.pool1d(op, x)]
        elif isinstance(op, ir.Affine):
            made = [backend.affine(op, x)]
        elif isinstance(op, ir.LayerNorm):
            made = [backend.layer_norm(op, x)]
        elif isinstance(op, ir.Standardize):
            made = [backend.standardize(op, x)]
        elif isinstance(op, ir.Pad1D):
            made = [_pad(op, x)]
        elif isinstance(op, ir.UpSample1D):
            made = [np.repeat(x, op.size, axis=1)]
        elif isinstance(op, ir.Reshape):  # lengths checked above
            made = [np.ascontiguousarray(x.reshape(x.shape[0], op.steps, op.features))]
        elif isinstance(op, ir.Permute):
            made = [np.ascontiguousarray(x.transpose(0, 2, 1))]
        elif isinstance(op, ir.Flatten):  # its length is checked above
            made = [np.ascontiguousarray(x.reshape(x.shape[0], -1))]
        else:  # pragma: no cover - ir validation makes this unreachable
            raise TypeError(f"unknown op {type(op).__name__}")
        env.update(zip(node.outputs, made))
    return [env[name] for name in spec.outputs]


def _check_lengths(spec: ir.ModelSpec, lengths: dict) -> None:
    """One :class:`InvalidInput` before anything runs when the inputs' lengths do not fit the graph:
    a convolution or pooling left with no timestep (with the shortest input length that works,
    for a model of one sequence input), a Flatten of another length."""
    _, problems = spec.sequence_problems(lengths)
    if not problems:
        return
    sequences = [i.name for i in spec.inputs if i.rank == 3] or list(lengths)  # else the codes' length
    if len(sequences) == 1:
        name, steps = sequences[0], lengths[sequences[0]]
        if not _fits(spec, name, steps):
            problems.append(f"input {name!r} has {steps} timesteps; this model needs at least {min_steps(spec, name)}")
    raise InvalidInput("the input does not fit the model's layers", problems)


def _fits(spec: ir.ModelSpec, name: str, steps: int) -> bool:
    """Whether ``steps`` timesteps of input ``name`` leave every sequence of the model at least one."""
    time, _ = spec.sequence_problems({name: steps})
    return all(t != 0 for axis, t in time.values() if axis is not None)


def _sequence_input(spec: ir.ModelSpec) -> str:
    """The model's one sequence input, or its one input of integer codes."""
    (name,) = [i.name for i in spec.inputs if i.rank == 3] or [i.name for i in spec.inputs if i.dtype == "int"]
    return name


def _least(test) -> int:
    """The least length ``n >= 1`` with ``test(n)`` true, for a ``test`` that stays true once true
    (every op's output length grows with its input's): a doubling search then a bisection; a length
    past the store's bound on any dimension (2**24) when none is found below it."""
    high = 1
    while not test(high):
        if high > 1 << 24:
            return high
        high *= 2
    low = high // 2  # fails (or is 0)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if test(middle) else (middle, high)
    return high


def min_steps(spec: ir.ModelSpec, name: str | None = None) -> int:
    """The fewest timesteps the sequence input ``name`` (default: the model's one sequence input, or
    its one input of integer codes) may
    have so that no convolution, pooling or crop is left with none (1 without them)."""
    name = name or _sequence_input(spec)
    return _least(lambda steps: _fits(spec, name, steps))


def flatten_steps(spec: ir.ModelSpec, name: str | None = None) -> Optional[int]:
    """The shortest length of the sequence input ``name`` (default as :func:`min_steps`) at which the
    first Flatten of a sequence gets the ``steps`` it fixes (the convolutions and poolings before it
    make several lengths fit with strides; any of them runs); None without such a Flatten, or when
    no length gives it exactly. For importers whose source declares no input length (PyTorch's
    modules, ONNX graphs with a dynamic time axis): verification runs the model at that length."""
    flatten = next((node for node in spec.nodes if isinstance(node.op, ir.Flatten)
                    and spec.tensor_shape(node.inputs[0])[0] == 3), None)
    if flatten is None:
        return None
    name = name or _sequence_input(spec)

    def reaching(steps: int) -> Optional[int]:
        return spec.sequence_problems({name: steps})[0][flatten.inputs[0]][1]

    steps = _least(lambda n: (reaching(n) or 0) >= flatten.op.steps)
    return steps if reaching(steps) == flatten.op.steps else None


def several_inputs_problem(spec: ir.ModelSpec, tool: str) -> str | None:
    """For the tools that feed a stream one array per step (``edgernn run``'s rows, ``replay``,
    ``bench``): why ``spec``, a model of several inputs, is not for ``tool``, or None."""
    if len(spec.inputs) < 2:
        return None
    return (f"{tool} feeds a model of one input; this one has {len(spec.inputs)} "
            f"({', '.join(repr(i.name) for i in spec.inputs)}): step it from Python, stream.step(x1_t, x2_t, ...)")


def emission_schedule(op, schedule: tuple[int, int]) -> tuple[int, int]:
    """When a windowed op (a streamable Conv1D or pooling) emits, given when its input does.

    A schedule ``(first, period)`` says a tensor gets a fresh row at the model's inputs ``first,
    first + period, ...`` (1-based; the model input's is ``(1, 1)``). A window that needs ``need``
    inputs before its first full window and then emits every ``strides`` inputs (see
    :mod:`edgernn.kernels.window`) emits on its ``need + 1``-th input, then every ``strides``-th:
    ``(first + period * need, period * strides)``; every other op keeps its input's schedule.
    """
    from .kernels.program import window_geometry  # NumPy only, as this module

    first, period = schedule
    if isinstance(op, (ir.Conv1D, ir.Pooling1D, ir.Pad1D)):
        _, _, _, strides, need = window_geometry(op)
        if isinstance(op, ir.Pad1D):  # its zero rows on the left come before the first step
            need -= max(op.left, 0)
        return first + period * need, period * strides
    return schedule


def streamable_problem(spec: ir.ModelSpec) -> str | None:
    """Why ``spec`` cannot be stepped one timestep at a time, or None if it can.

    A stream needs sequence inputs, stepped together (or one input of integer codes), and a graph
    of causal ops -- forward
    recurrent layers without given initial states, Dense, Activation, Masking, Affine, LayerNorm,
    Standardize, an Embedding of the integer codes (the input); Conv1D with causal or valid
    padding, valid or global pooling, whose past inputs become state; Flatten of a vector; Cropping1D,
    ZeroPadding1D on the left, Reshape that keeps every timestep, UpSampling1D
    (:func:`_time_layout_problem`) -- and merges of them (Merge's add ... minimum, Concatenate over
    features), whose branches fork and join again; one output. Every layer after a left
    ZeroPadding1D or an UpSampling1D reads only what descends from it: a stream runs those layers
    apart (from the state the padding's zeros leave; ``size`` times per input), so they cannot
    join tensors that step once per input. Schedules after an UpSampling1D count its timesteps.

    Each tensor has an emission schedule (:func:`emission_schedule`): the steps at which it gets a
    fresh row. A merge's inputs must emit on the same steps (they do in every graph Keras builds,
    whose merged tensors have equal lengths for every T; a hand-made spec may differ), and so must
    a mask and the tensor it is read over: then row k of each comes at the same step, as predict
    pairs them.
    """
    vectors = [i.name for i in spec.inputs if i.rank != 3 and i.dtype != "int"]
    if vectors or (len(spec.inputs) > 1 and any(i.dtype == "int" for i in spec.inputs)):
        return (f"a stream takes sequence inputs (batch, T, features), one timestep of each per step, or one input of "
                f"integer codes (batch, T); this model has {len(spec.inputs)} input(s)"
                + (f", {', '.join(map(repr, vectors))} one vector per sequence" if vectors else ", codes among them"))
    fixed = {i.name: i.timesteps for i in spec.inputs if i.timesteps is not None}
    if len(spec.inputs) > 1 and len(set(fixed.values())) > 1:
        return (f"the inputs have different lengths ({', '.join(f'{n!r}: {t} steps' for n, t in fixed.items())}): a "
                "stream steps one timestep of each together (use predict)")
    readers = [node.op.name for node in spec.nodes if spec.inputs[0].name in node.inputs]
    if spec.inputs[0].dtype == "int" and len(readers) > 1:
        return (f"layers {', '.join(map(repr, readers))} all read the integer codes: a stream of codes takes one "
                "Embedding (use predict)")
    if len(spec.outputs) != 1:
        return f"a stream makes one output; this model has {len(spec.outputs)} ({', '.join(spec.outputs)})"
    schedule = {i.name: (1, 1) for i in spec.inputs}  # every input gets a timestep at every step
    primary = {i.name for i in spec.inputs} | {node.outputs[0] for node in spec.nodes}  # data, not masks or states
    if spec.outputs[0] not in primary:
        return f"the model's output {spec.outputs[0]!r} is a layer's state or mask, which a stream does not output"
    # (a left ZeroPadding1D or an UpSampling1D: its name, kind and why, the tensors that descend from it alone)
    padded = []
    for node in spec.nodes:
        op = node.op
        if isinstance(op, ir.Concatenate) and op.axis == "time":
            return (f"layer {op.name!r} is Concatenate over time: its output's timesteps are its inputs' one after "
                    "another, which needs whole sequences (use predict)")
        if any(name not in primary for name in node.inputs):  # a recurrent layer's final state, say
            return (f"layer {op.name!r} reads a layer's state output (return_state), which a stream does not "
                    "carry as a tensor: use predict")
        if isinstance(op, ir.Bidirectional):
            return f"layer {op.name!r} is Bidirectional: its backward half needs the whole sequence (use predict)"
        if isinstance(op, ir.RepeatVector):
            return f"layer {op.name!r} is RepeatVector: one-to-many models run in predict only"
        if isinstance(op, (ir.Conv1D, ir.Pooling1D)) and op.padding == "same" and not getattr(op, "global_pool", False):
            kind = "Conv1D" if isinstance(op, ir.Conv1D) else "Pooling1D"
            return (f"layer {op.name!r} is {kind} with padding='same': its output at a timestep reads later inputs "
                    "(use predict, or padding='causal' / 'valid' to stream)")
        if isinstance(op, ir.Flatten) and spec.tensor_shape(node.inputs[0])[0] == 3:
            return f"layer {op.name!r} is Flatten over time: it needs the whole sequence of {op.steps} steps (use predict)"
        why = _time_layout_problem(op)
        if why is not None:
            return f"layer {op.name!r} is {why}"
        for (pad, kind, why_alone), after in padded:
            if not set(node.inputs) | ({node.mask} - {None}) <= after:
                return (f"layer {op.name!r} reads a tensor from before {pad!r}, {kind}: a stream {why_alone}, so "
                        "each of them must read only what descends from it (use predict)")
            after.update(node.outputs)
        if isinstance(op, ir.Pad1D) and op.left > 0:
            padded.append(((op.name, "ZeroPadding1D on the left", "starts the layers after that padding from the "
                            "state its zero rows leave"), set(node.outputs)))
        if isinstance(op, ir.UpSample1D):
            padded.append(((op.name, f"UpSampling1D (size {op.size})", f"steps the layers after it {op.size} times "
                            "per input, on timesteps of their own"), set(node.outputs)))
        if isinstance(op, ir.Recurrent) and op.go_backwards:
            return f"layer {op.name!r} reads its input backwards (go_backwards): use predict"
        if node.initial_state:
            return f"layer {op.name!r} starts from another layer's state (encoder-decoder): use predict"
        schedules = {schedule[name] for name in node.inputs}
        if len(schedules) > 1:
            described = ", ".join(f"{name!r} on steps {_steps_text(schedule[name])}" for name in node.inputs)
            return (f"layer {op.name!r} ({type(op).__name__}) joins tensors that get new timesteps on different steps "
                    f"of a stream ({described}): their windowed layers (Conv1D, pooling) do not line up")
        if node.mask and schedule[node.mask] != schedule[node.inputs[0]]:  # (row k of each: the same step)
            return (f"layer {op.name!r} reads mask {node.mask!r}, which gets new timesteps on steps "
                    f"{_steps_text(schedule[node.mask])} of a stream, over a tensor that gets them on steps "
                    f"{_steps_text(schedule[node.inputs[0]])}: another time axis")
        made_schedule = emission_schedule(op, schedules.pop())
        if isinstance(op, ir.UpSample1D):  # a time axis of its own: every layer after it reads only from it
            made_schedule = (1, 1)
        for name in node.outputs:  # (a mask too)
            schedule[name] = made_schedule
    return None


def _time_layout_problem(op) -> str | None:
    """Why a layer that moves timesteps around cannot stream (what follows "layer 'name' is"), or None.

    Each streams where ``predict`` on a prefix ends in a row the stream can make at that step:
    Cropping1D (its first rows dropped, the rows cropped at the end a delay line), ZeroPadding1D
    on the left (the layers after it start from the state its zero rows leave), Reshape that keeps
    every timestep (an identity per row), UpSampling1D (the layers after it step ``size`` times per
    input, and the stream returns the last row they made). The rest change the rows already made."""
    if isinstance(op, ir.Pad1D) and op.right > 0:
        return (f"ZeroPadding1D with {op.right} zero timesteps on the right: predict on every prefix ends with them, "
                "and a stream cannot take them back at the next step (use predict, or pad on the left only)")
    if isinstance(op, ir.Permute):
        return (f"Permute swapping time and features: each output timestep holds one feature of all {op.steps} input "
                "timesteps, so it needs the whole sequence (use predict)")
    if isinstance(op, ir.Reshape) and not (op.input_steps == op.steps):
        source = f"{op.input_steps} timesteps" if op.input_steps else "a vector"
        return (f"Reshape of {source} into {op.steps} timesteps of {op.features} features: it regroups the values "
                "of several timesteps, so it needs the whole sequence (use predict)")
    return None


def _steps_text(schedule: tuple[int, int]) -> str:
    first, period = schedule
    return f"{first}, {first + period}, {first + 2 * period}, ..."
