"""Where the time of one many-streams step goes: edgernn's parts next to TFLite's, in one run.

    python tools/bench/profile_streams.py                 # models a-e, 400 streams
    python tools/bench/profile_streams.py --models e --streams 400 --rounds 9

The streams section of tools/bench/run.py times whole steps; this takes one step of ``N`` streams
apart, to show which part to work on. All rows of one model are timed together, interleaved
(:func:`edgernn.bench.measure`), single-threaded, and printed as medians in µs per call, then
the machine's description (CPU, vector extensions, versions, load) as the suite prints it:

* edgernn: the whole ``s.step(x, out=y)``, then stage by stage:

  * per ungrouped Conv1D (model (e)): its whole step (``conv_batch``: count the input, the
    product across the streams read straight from the ring, relu as the product stores, push the
    input into the ring), the product alone, and the rest of the step (the difference: counting,
    pushing, the call); for comparison, what the step used to do instead: gather the windows into
    a copy (``conv_gather``) and apply the relu in a pass of its own (``activation_forward``);
  * per recurrent layer, its product(s) across the streams alone (``RecurrentKernel.batch_products``:
    ``x W + b + h U`` with the weights packed once, edgernn/kernels/_gemm.py; GRU makes its z
    and r gates whole and its candidate's two parts apart), OpenBLAS's ``h U`` through
    ``np.matmul`` for comparison (what edgernn used before), the layer's whole step (those
    products, then the jitted pass: gates and cell update), the jitted pass (the difference),
    and for an LSTM whose gates are all tanh (``RecurrentKernel.halved``) the flat tanh over
    all gates alone, a part of that pass;
  * the Dense head;
  * the rest: the whole minus the stages, which is the Python side and copies (a few µs) plus
    whatever the parts cost more in one step than timed one at a time (each timed alone keeps
    its own weights in cache; model (c)'s two layers do not fit together).
* TFLite (LiteRT, XNNPACK delegate): the one-step model of tools/bench/models.py at batch ``N``
  (state in resource variables), timed as the suite's streams section times it (set the input,
  invoke, get the output), and single ops of the same shapes converted alone: per Conv1D the
  product over its window (FULLY_CONNECTED) and its relu; per recurrent layer ``h U``
  (FULLY_CONNECTED), LOGISTIC over the gate pre-activations and TANH over a state-sized array.

Each product's row also gives its rate in G multiply-adds a second (its streams x depth x
columns, the padding of a last panel not counted). Timing only: no assertion anywhere.
"""

from __future__ import annotations

import os
import sys

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import models as M  # noqa: E402
from bench import peers as P  # noqa: E402
from bench.run import _configure_frameworks  # noqa: E402

from edgernn import kernels  # noqa: E402
from edgernn.bench import Contender, format_system, load_average, measure, median, system_info  # noqa: E402
from edgernn.kernels.activations import tanh_in_place  # noqa: E402
from edgernn.kernels._gemm import packed_affine  # noqa: E402
from edgernn.runtime import _RecurrentStage, _WindowStage, fused_step_max_batch  # noqa: E402

F32 = np.float32
WHOLE = "edgernn s.step(x, out=y), whole"
_CONV_STEP = "edgernn Conv1D {}: whole step (conv_batch: count, product from the ring, relu, push)"
_CONV_PRODUCT = "edgernn Conv1D {}: product from the ring alone (relu as it stores)"
_CONV_REST = "edgernn Conv1D {}: count, push, call (difference)"
_GATHER = "for comparison, Conv1D {}: gathering the windows into a copy (conv_gather)"
_ACTIVATION = "for comparison, Conv1D {}: its activation as a pass of its own (activation_forward)"
_WINDOW_STEP = "edgernn {} {}: whole step (window_batch)"
_PRODUCTS = "edgernn layer {}: packed product(s) across streams"
_OPENBLAS = "for comparison, layer {}: h U by OpenBLAS (np.matmul)"
_LAYER_STEP = "edgernn layer {}: whole step (products + jitted pass)"
_PASS = "edgernn layer {}: jitted pass (difference)"
_TANH = "edgernn layer {}: of which the flat tanh over all gates alone (tanh_in_place)"
REST = "edgernn rest: Python side, copies, caches shared in one step (difference)"
TFLITE_WHOLE = "TFLite+XNNPACK one-step model, whole (set input, invoke, get output)"


def _tflite_op(build, shape, rng):
    """An interpreter for one TF function of one float32 input of ``shape``, its input set."""
    import tensorflow as tf

    function = tf.function(build, input_signature=[tf.TensorSpec(shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], tf.Module())
    interpreter = P.litert_interpreter(converter.convert())
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rng.normal(size=shape).astype(F32))
    return interpreter


def _product_with(weights):
    """``h -> h @ weights`` with the weights a constant made inside the function (a captured
    tensor would become an input of the converted model)."""
    import tensorflow as tf

    def product(h):
        return tf.matmul(h, tf.constant(weights))

    return product


def _conv_rows(stage, number, inputs, streams):
    """An ungrouped Conv1D's rows, stepping on ``inputs`` (streams, C): its whole step, its
    product alone, and for comparison the gather and activation pass it no longer makes; and the
    multiply-adds of its product."""
    ring, counters = stage.states
    dilation, _, need, strides = stage.args
    product, tail = stage.product
    active = np.ones(streams, np.bool_)  # every stream's input fresh (a causal one keeps it so)
    stage.batch_step(inputs, active)  # its tap starts, as the product alone reads them
    windows = np.zeros((streams, stage.kernel_2d.shape[0]), F32)
    return streams * stage.kernel_2d.size, [
        Contender(_CONV_STEP.format(number), "step(x, active)", {"step": stage.batch_step, "x": inputs,
                                                                  "active": active}),
        Contender(_CONV_PRODUCT.format(number), "affine(ring, w_ring, x, w_x, b, n, y, tail, taps, relu)",
                  {"affine": packed_affine, "ring": ring, "w_ring": product.first, "x": inputs,
                   "w_x": product.second, "b": product.bias, "n": product.columns, "y": stage.step_y,
                   "tail": tail, "taps": stage.tap_starts, "relu": stage.relu}),
        Contender(_GATHER.format(number), "gather(x, active, windows, ring, counters, k, d, need, strides)",
                  {"gather": kernels.conv_gather, "x": inputs, "active": np.ones(streams, np.bool_),
                   "windows": windows, "ring": ring, "counters": counters, "k": stage.taps, "d": dilation,
                   "need": need, "strides": strides}),
        Contender(_ACTIVATION.format(number), "activation(y, kind, y)",
                  {"activation": kernels.activation_forward, "y": np.zeros_like(stage.step_y),
                   "kind": stage.activation}),
    ]


def contenders(bundle: P.Bundle, streams: int):
    """The rows to time for one model, as :class:`Contender`s (edgernn first, then TFLite); the
    derived rows, ``{whole: (name, [parts])}``, printed after ``whole`` as whole - parts; and the
    multiply-adds of each product row, ``{name: count}``."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    model_def, model = bundle.model, bundle.edgernn
    stream = model.stream(streams)
    if stream._fused:
        raise SystemExit(f"{streams} streams of {model_def.label} step through the fused kernel, not products across streams: "
                         f"take more than {fused_step_max_batch(model.spec)}")
    x = rng.normal(size=(streams, model_def.features)).astype(F32)
    y = np.zeros((streams, model_def.outputs), F32)
    stream.step(x, out=y)
    rows = [Contender(WHOLE, "step(x, out=y)", {"step": stream.step, "x": x, "y": y})]
    derived, stage_rows, work = {}, [], {}
    width, convs, layers = model_def.features, 0, 0
    for stage in stream._stages:
        inputs = np.zeros((streams, width), F32)
        if isinstance(stage, _WindowStage) and stage.product is not None:
            convs += 1
            work[_CONV_PRODUCT.format(convs)], conv_rows = _conv_rows(stage, convs, inputs, streams)
            rows += conv_rows
            derived[_CONV_STEP.format(convs)] = (_CONV_REST.format(convs), [_CONV_PRODUCT.format(convs)])
            stage_rows.append(_CONV_STEP.format(convs))
        elif isinstance(stage, _WindowStage):
            name = _WINDOW_STEP.format(type(stage.node.op).__name__, len(stage_rows) + 1)
            rows.append(Contender(name, "step(x, active)", {"step": stage.batch_step, "x": inputs,
                                                             "active": np.ones(streams, np.bool_)}))
            stage_rows.append(name)
        elif isinstance(stage, _RecurrentStage):
            layers += 1
            kernel, buffers = stage.kernel, stage.buffers
            layer, recurrent = kernel.layer, kernel.recurrent_main  # U (GRU without reset_after: its z, r blocks)
            rows.append(Contender(_PRODUCTS.format(layers), "products(x, h, buffers)",
                                  {"products": kernel.batch_products, "x": inputs, "h": stage.states[0],
                                   "buffers": buffers}))
            work[_PRODUCTS.format(layers)] = streams * sum(
                (product.first.shape[1] + product.second.shape[1]) * product.columns
                for product in kernel.products.values())
            work[_OPENBLAS.format(layers)] = streams * recurrent.size
            rows.append(Contender(_OPENBLAS.format(layers), "mm(h, U, out=hu)",
                                  {"mm": np.matmul, "h": stage.states[0], "U": recurrent,
                                   "hu": np.zeros((streams, recurrent.shape[1]), F32)}))
            rows.append(Contender(_LAYER_STEP.format(layers), "batch_step(xin, keep)",
                                  {"batch_step": stage.batch_step, "xin": inputs, "keep": stream._all_kept}))
            if layer.cell == "lstm" and kernel.halved:
                rows.append(Contender(_TANH.format(layers), "tanh(z)", {"tanh": tanh_in_place, "z": buffers[2]}))
            derived[_LAYER_STEP.format(layers)] = (_PASS.format(layers), [_PRODUCTS.format(layers)])
            stage_rows.append(_LAYER_STEP.format(layers))
        else:
            name = f"edgernn head ({type(stage.node.op).__name__})"
            rows.append(Contender(name, "head(v)", {"head": stage.batch_step, "v": inputs}))
            stage_rows.append(name)
        width = stage.width
    derived[WHOLE] = (REST, stage_rows)

    interpreter = P.litert_interpreter(bundle.tflite("step_rv", streams))
    rows.append(Contender(TFLITE_WHOLE, P.RESOURCE_VARIABLE_STEP,
                          {"set_tensor": interpreter.set_tensor, "invoke": interpreter.invoke,
                           "get_tensor": interpreter.get_tensor, "x": x,
                           "ii": interpreter.get_input_details()[0]["index"],
                           "oi": interpreter.get_output_details()[0]["index"]}))
    ops = {}
    channels = [model_def.features] + [filters for filters, _ in model_def.conv]
    for number, ((kernel, _), (filters, _), window) in enumerate(
            zip(model_def.conv_weights, model_def.conv, channels), 1):
        taps_by_channels = kernel.shape[0] * window
        name = f"TFLite Conv1D {number}: window product alone (FULLY_CONNECTED, {taps_by_channels} -> {filters})"
        ops[name] = (_product_with(kernel.reshape(taps_by_channels, filters)), taps_by_channels)
        work[name] = streams * kernel.size
        ops[f"TFLite Conv1D {number}: relu over ({streams}, {filters}) alone"] = (tf.nn.relu, filters)
    for number, ((_, recurrent, _), units) in enumerate(zip(model_def.weights[:-1], model_def.units), 1):
        width = recurrent.shape[1]
        ops[f"TFLite layer {number}: h U alone (FULLY_CONNECTED)"] = (_product_with(recurrent), units)
        work[f"TFLite layer {number}: h U alone (FULLY_CONNECTED)"] = streams * recurrent.size
        ops[f"TFLite layer {number}: sigmoid over ({streams}, {width}) alone"] = (tf.sigmoid, width)
        ops[f"TFLite layer {number}: tanh over ({streams}, {units}) alone"] = (tf.tanh, units)
    for name, (build, columns) in ops.items():
        op = _tflite_op(build, (streams, columns), rng)
        rows.append(Contender(name, "invoke()", {"invoke": op.invoke}))
    return rows, derived, work


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="a,b,c,d,e")
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05)
    args = parser.parse_args(argv)
    load_before = load_average()
    info = system_info(_configure_frameworks(lambda message: print(message, file=sys.stderr)))
    print(f"One step of {args.streams} streams, µs per call (median of {args.rounds} interleaved rounds, "
          "one thread)\n")
    for key in args.models.split(","):
        model_def = M.make_weights(M.MODELS[key])
        with tempfile.TemporaryDirectory() as workdir:
            rows, derived, work = contenders(P.Bundle(model_def, Path(workdir)), args.streams)
        times = {name: median(values) * 1e6
                 for name, values in measure(rows, rounds=args.rounds, min_time=args.min_time).items()}
        whole, tflite = times[WHOLE], times[TFLITE_WHOLE]
        print(f"### {model_def.label}\n\nedgernn's step / TFLite's: {whole / tflite:.2f}x\n\n"
              "| part | µs | share of edgernn's step | G multiply-adds a second |\n|---|---:|---:|---:|")
        lines = []
        for name, value in times.items():
            lines.append((name, value))
            if name in derived and name != WHOLE:
                difference, parts = derived[name]
                lines.append((difference, value - sum(times[part] for part in parts)))
        rest, parts = derived[WHOLE]
        lines.insert(len([n for n, _ in lines if n.startswith(("edgernn", "for comparison"))]),
                     (rest, whole - sum(times[part] for part in parts)))
        for name, value in lines:
            share = f"{value / whole:.0%}" if name.startswith("edgernn") else ""
            rate = f"{work[name] / value / 1e3:,.0f}" if name in work else ""
            print(f"| {name} | {value:,.1f} | {share} | {rate} |")
        print()
    info["load average"] = f"{load_before} at start; {load_average()} at end (1, 5, 15 min)"
    info["settings"] = f"streams={args.streams}, rounds={args.rounds}, min_time={args.min_time}s per measurement"
    print(format_system(info))


if __name__ == "__main__":
    main()
