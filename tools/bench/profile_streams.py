"""Where the time of one many-streams step goes: edgernn's parts next to TFLite's, in one run.

    python tools/bench/profile_streams.py                 # models a-d, 400 streams
    python tools/bench/profile_streams.py --models b --streams 400 --rounds 9

The streams section of tools/bench/run.py times whole steps; this takes one step of ``N`` streams
apart, to show which part to work on. All rows of one model are timed together, interleaved
(:func:`edgernn.bench.measure`), single-threaded, and printed as medians in µs per call:

* edgernn: the whole ``s.step(x, out=y)``; per recurrent layer, its BLAS product(s) across the
  streams alone (``h U``, and ``x W`` for wide inputs) and the layer's whole step (those products,
  then the jitted pass over each stream: the input projection of narrow inputs, biases, gates,
  cell update); the Dense head; the rest (the whole minus the layers and head: Python and copies).
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
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import models as M  # noqa: E402

import edgernn  # noqa: E402
from edgernn.bench import Contender, measure, median  # noqa: E402
from edgernn.runtime import _RecurrentStage  # noqa: E402

F32 = np.float32


def _tflite_interpreter(content: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _tflite_op(build, shape, rng):
    """An interpreter for one TF function of one float32 input of ``shape``, its input set."""
    import tensorflow as tf

    function = tf.function(build, input_signature=[tf.TensorSpec(shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], tf.Module())
    interpreter = _tflite_interpreter(converter.convert())
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rng.normal(size=shape).astype(F32))
    return interpreter


def _product_with(weights):
    """``h -> h @ weights`` with the weights a constant made inside the function (a captured
    tensor would become an input of the converted model)."""
    import tensorflow as tf

    def product(h):
        return tf.matmul(h, tf.constant(weights))

    return product


def contenders(model_def: M.ModelDef, streams: int):
    """The rows to time for one model, as :class:`Contender`s (edgernn first, then TFLite)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    model = edgernn.convert(M.keras_model(model_def))
    stream = model.stream(streams)
    if stream._fused:
        raise SystemExit(f"{streams} streams of {model_def.label} step through the fused kernel, not BLAS products: "
                         f"take more than {edgernn.runtime.fused_step_max_batch(model.spec)}")
    x = rng.normal(size=(streams, model_def.features)).astype(F32)
    y = np.zeros((streams, model_def.outputs), F32)
    stream.step(x, out=y)
    rows = [Contender("edgernn s.step(x, out=y), whole", "step(x, out=y)", {"step": stream.step, "x": x, "y": y})]
    layers = [stage for stage in stream._stages if isinstance(stage, _RecurrentStage)]
    heads = [stage for stage in stream._stages if not isinstance(stage, _RecurrentStage)]
    for number, stage in enumerate(layers, 1):
        kernel, (xw, hu) = stage.kernel, stage.buffers
        layer = kernel.layer
        recurrent = kernel.recurrent_main if layer.cell == "gru" else layer.recurrent_kernel
        inputs = np.zeros((streams, layer.input_size), F32)
        names = {"mm": np.matmul, "h": stage.states[0], "U": recurrent, "hu": hu[:, : recurrent.shape[1]],
                 "xin": inputs, "W": layer.kernel, "xw": xw}
        products = "mm(h, U, out=hu)" + ("" if kernel.project_input else "; mm(xin, W, out=xw)")
        rows.append(Contender(f"edgernn layer {number}: BLAS product(s) across streams", products, names))
        rows.append(Contender(f"edgernn layer {number}: whole step (products + jitted pass)",
                              "batch_step(xin, keep)", {"batch_step": stage.batch_step, "xin": inputs,
                                                        "keep": stream._all_kept}))
    for stage in heads:
        head_input = np.zeros((streams, layers[-1].width), F32)
        rows.append(Contender(f"edgernn head ({type(stage.node.op).__name__})", "head(v)",
                              {"head": stage.batch_step, "v": head_input}))

    interpreter = _tflite_interpreter(M.tflite_step(model_def, batch=streams))
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
        rows = contenders(model_def, args.streams)
        times = {name: median(values) * 1e6
                 for name, values in measure(rows, rounds=args.rounds, min_time=args.min_time).items()}
        whole = times["edgernn s.step(x, out=y), whole"]
        parts = [t for name, t in times.items() if "whole step" in name or name.startswith("edgernn head")]
        print(f"### {model_def.label}\n\n| part | µs | share of edgernn's step |\n|---|---:|---:|")
        for name, value in times.items():
            share = f"{value / whole:.0%}" if name.startswith("edgernn") else ""
            print(f"| {name} | {value:,.1f} | {share} |")
            if "whole step" in name:
                products = times[name.replace("whole step (products + jitted pass)",
                                              "BLAS product(s) across streams")]
                print(f"| edgernn {name.split(':')[0][8:]}: jitted pass (difference) | {value - products:,.1f} | "
                      f"{(value - products) / whole:.0%} |")
        print(f"| edgernn rest: Python side and copies (difference) | {whole - sum(parts):,.1f} | "
              f"{(whole - sum(parts)) / whole:.0%} |\n")


if __name__ == "__main__":
    main()
