"""Where the time of one many-streams step goes: edgernn's parts next to TFLite's, in one run.

    python tools/bench/profile_streams.py                 # models a-d, 400 streams
    python tools/bench/profile_streams.py --models b --streams 400 --rounds 9

The streams section of tools/bench/run.py times whole steps; this takes one step of ``N`` streams
apart, to show which part to work on. All rows of one model are timed together, interleaved
(:func:`edgernn.bench.measure`), single-threaded, and printed as medians in µs per call:

* edgernn: the whole ``s.step(x, out=y)``; per recurrent layer, its product(s) across the
  streams alone (``RecurrentKernel.batch_products``: ``x W + b + h U`` with the weights packed
  once, edgernn/kernels/_gemm.py; GRU makes its z and r gates whole and its candidate's two
  parts apart), OpenBLAS's ``h U`` through ``np.matmul`` for comparison (what edgernn used
  before), and the layer's whole step (those products, then the jitted pass: gates and cell
  update); the Dense head; the rest: the whole minus the layers and head, which is the Python
  side and copies (a few µs) plus whatever the parts cost more in one step than timed one at a
  time (each timed alone keeps its own weights in cache; model (c)'s two layers do not fit together).
* TFLite (LiteRT, XNNPACK delegate): the one-step model of tools/bench/models.py at batch ``N``
  (state in resource variables), and single ops of the same shapes converted alone: the layer's
  ``h U`` (FULLY_CONNECTED), LOGISTIC over the gate pre-activations and TANH over a state-sized
  array.

The gate pass is the layer's step minus its products. Timing only: no assertion anywhere.
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

from edgernn.bench import Contender, measure, median  # noqa: E402
from edgernn.runtime import _RecurrentStage, fused_step_max_batch  # noqa: E402

F32 = np.float32
WHOLE = "edgernn s.step(x, out=y), whole"
_PRODUCTS = "edgernn layer {}: packed product(s) across streams"
_OPENBLAS = "for comparison, layer {}: h U by OpenBLAS (np.matmul)"
_LAYER_STEP = "edgernn layer {}: whole step (products + jitted pass)"
_PASS = "edgernn layer {}: jitted pass (difference)"
REST = "edgernn rest: Python side, copies, caches shared in one step (difference)"


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


def contenders(bundle: P.Bundle, streams: int):
    """The rows to time for one model, as :class:`Contender`s (edgernn first, then TFLite)."""
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
    layers = [stage for stage in stream._stages if isinstance(stage, _RecurrentStage)]
    heads = [stage for stage in stream._stages if not isinstance(stage, _RecurrentStage)]
    for number, stage in enumerate(layers, 1):
        kernel, buffers = stage.kernel, stage.buffers
        layer, recurrent = kernel.layer, kernel.recurrent_main  # U (GRU without reset_after: its z, r blocks)
        inputs = np.zeros((streams, layer.input_size), F32)
        rows.append(Contender(_PRODUCTS.format(number), "products(x, h, buffers)",
                              {"products": kernel.batch_products, "x": inputs, "h": stage.states[0],
                               "buffers": buffers}))
        rows.append(Contender(_OPENBLAS.format(number), "mm(h, U, out=hu)",
                              {"mm": np.matmul, "h": stage.states[0], "U": recurrent,
                               "hu": np.zeros((streams, recurrent.shape[1]), F32)}))
        rows.append(Contender(_LAYER_STEP.format(number),
                              "batch_step(xin, keep)", {"batch_step": stage.batch_step, "xin": inputs,
                                                        "keep": stream._all_kept}))
    for stage in heads:
        head_input = np.zeros((streams, layers[-1].width), F32)
        rows.append(Contender(f"edgernn head ({type(stage.node.op).__name__})", "head(v)",
                              {"head": stage.batch_step, "v": head_input}))

    interpreter = P.litert_interpreter(bundle.tflite("step_rv", streams))
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    rows.append(Contender("TFLite+XNNPACK one-step model, whole", "invoke()", {"invoke": interpreter.invoke}))
    for number, ((_, recurrent, _), units) in enumerate(zip(model_def.weights[:-1], model_def.units), 1):
        width = recurrent.shape[1]
        ops = {
            f"TFLite layer {number}: h U alone (FULLY_CONNECTED)": (_product_with(recurrent), units),
            f"TFLite layer {number}: sigmoid over ({streams}, {width}) alone": (tf.sigmoid, width),
            f"TFLite layer {number}: tanh over ({streams}, {units}) alone": (tf.tanh, units),
        }
        for name, (build, columns) in ops.items():
            op = _tflite_op(build, (streams, columns), rng)
            rows.append(Contender(name, "invoke()", {"invoke": op.invoke}))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="a,b,c,d")
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05)
    args = parser.parse_args(argv)
    print(f"One step of {args.streams} streams, µs per call (median of {args.rounds} interleaved rounds, "
          "one thread)\n")
    for key in args.models.split(","):
        model_def = M.make_weights(M.MODELS[key])
        with tempfile.TemporaryDirectory() as workdir:
            rows = contenders(P.Bundle(model_def, Path(workdir)), args.streams)
        times = {name: median(values) * 1e6
                 for name, values in measure(rows, rounds=args.rounds, min_time=args.min_time).items()}
        whole = times[WHOLE]
        layer_steps = [name for name in times if name.startswith("edgernn layer") and "whole step" in name]
        parts = layer_steps + [name for name in times if name.startswith("edgernn head")]
        print(f"### {model_def.label}\n\n| part | µs | share of edgernn's step |\n|---|---:|---:|")
        for name, value in times.items():
            print(f"| {name} | {value:,.1f} | {f'{value / whole:.0%}' if name.startswith('edgernn') else ''} |")
            if name in layer_steps:
                number = layer_steps.index(name) + 1
                jitted = value - times[_PRODUCTS.format(number)]
                print(f"| {_PASS.format(number)} | {jitted:,.1f} | {jitted / whole:.0%} |")
        rest = whole - sum(times[name] for name in parts)
        print(f"| {REST} | {rest:,.1f} | {rest / whole:.0%} |\n")

if __name__ == "__main__":
    main()
