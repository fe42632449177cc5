"""Quantization: a float model and calibration data -> the integer model the firmware runs.

``quantize(model, calibration_x, scheme)`` is the separate pass of the pipeline: calibrate
(:mod:`.calibrate`), build the integer IR (:mod:`.spec`), and return a
:class:`~.runtime.QuantizedModel` whose Numba simulation (one file per op: :mod:`.lstm`,
:mod:`.gru`, :mod:`.simple_rnn`, :mod:`.dense`) is bit-exact with the C runtime in
``firmware_export/`` (one C file per op). Schemes: ``int8`` (integer only), ``int8-weights`` (int8 weights,
float32 activations), ``float32``.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import InvalidInput, UnsupportedModel
from ..graph import flatten_steps
from .calibrate import Ranges, as_sequences, float_layers
from .pairwise import firmware_form
from .runtime import QuantizedModel, QuantizedStream
from .spec import SCHEMES, QLayer, QSpec, build, supported_problems


def error_report(qmodel: QuantizedModel, spec, x: np.ndarray, float_outputs=None) -> list[dict]:
    """Per layer: max and mean |quantized output - float64 reference output| over ``x`` (every step)."""
    reference = float_outputs if float_outputs is not None else float_layers(spec, x)
    by_name = {node.op.name: output for node, output in zip(spec.nodes, reference)}  # (a folded node has no layer)
    quantized = qmodel.layer_outputs(x[..., 0] if qmodel.spec.vocab else x.astype(np.float32))
    report = []
    for layer, got in zip(qmodel.spec.layers, quantized):
        ref = by_name[layer.name]
        error = np.abs(got.astype(np.float64) - ref)
        report.append({"layer": layer.name, "kind": layer.kind, "max_abs_error": float(error.max()),
                       "mean_abs_error": float(error.mean()), "float_range": [float(ref.min()), float(ref.max())]})
    return report


def quantize(model, calibration_x, scheme: str = "int8") -> QuantizedModel:
    """Quantize ``model`` (an :class:`edgernn.Model`) for the firmware runtime.

    ``calibration_x``: representative inputs, (sequences, T, features) or (T, features) (a model of
    integer codes: (sequences, T) or (T,) codes), run from
    zero state through the float model to find the ranges (int8) and to measure each layer's error
    (all schemes; see ``QuantizedModel.report``). The float schemes accept None (no report).
    """
    spec = model.spec
    problems = supported_problems(spec, scheme)
    if problems:
        raise UnsupportedModel(f"cannot export this model in scheme {scheme!r}", problems)
    if calibration_x is None:
        if scheme == "int8":
            raise InvalidInput("the int8 scheme needs calibration data (representative inputs)")
        return QuantizedModel(build(spec, scheme, None), float_model=model)  # no data: no error report
    first = spec.nodes[0].op
    x = as_sequences(calibration_x, spec.inputs[0].features, first if isinstance(first, ir.Embedding) else None)
    ranges = Ranges()
    stepped = firmware_form(spec)  # calibrated and measured as the firmware runs it
    window = flatten_steps(spec)  # None without a Flatten over time (else the window's length)
    if window is not None and x.shape[1] < window:
        flatten = next(node.op.name for node in spec.nodes
                       if isinstance(node.op, ir.Flatten) and spec.tensor_shape(node.inputs[0])[0] == 3)
        raise InvalidInput(f"calibration sequences of {x.shape[1]} steps never fill the window of layer {flatten!r} "
                           f"(a Flatten over time: the model's input is {window} steps); give sequences of at least "
                           f"{window} steps")
    outputs = float_layers(stepped, x, ranges)
    qmodel = QuantizedModel(build(spec, scheme, ranges), float_model=model)
    qmodel.report = error_report(qmodel, stepped, x, outputs)
    return qmodel


def format_report(report: list[dict]) -> str:
    lines = [f"{'layer':<16} {'kind':<6} {'max abs err':>12} {'mean abs err':>12}  float range"]
    for r in report:
        lines.append(f"{r['layer']:<16} {r['kind']:<6} {r['max_abs_error']:>12.5g} {r['mean_abs_error']:>12.5g}  "
                     f"[{r['float_range'][0]:.4g}, {r['float_range'][1]:.4g}]")
    return "\n".join(lines)


__all__ = ["quantize", "QuantizedModel", "QuantizedStream", "QSpec", "QLayer", "SCHEMES", "build",
           "supported_problems", "error_report", "format_report", "Ranges", "float_layers"]
