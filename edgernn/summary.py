"""A human-readable description of a model: what ``edgernn info`` prints."""

from __future__ import annotations

from . import ir
from .graph import streamable_problem
from .verify import summary_line


def _details(op) -> str:
    if isinstance(op, ir.Recurrent):
        parts = [f"{op.cell.upper() if op.cell != 'simple' else 'SimpleRNN'}({op.units})",
                 f"activation={op.activation}"]
        if op.cell != "simple":
            parts.append(f"recurrent_activation={op.recurrent_activation}")
        if op.cell == "gru":
            parts.append(f"reset_after={op.reset_after}")
        if op.bias is None:
            parts.append("no bias")
        if op.return_sequences:
            parts.append("return_sequences")
        if op.go_backwards:
            parts.append("go_backwards")
        if op.peephole is not None:
            parts.append("peepholes")
        if op.projection is not None:
            parts.append(f"proj_size={op.output_size}")
        if op.cell_clip is not None:
            parts.append(f"cell_clip={op.cell_clip}")
        return ", ".join(parts)
    if isinstance(op, ir.Bidirectional):
        return f"Bidirectional({_details(op.forward)}), merge_mode={op.merge_mode}"
    if isinstance(op, ir.Dense):
        return f"Dense({op.output_size}), activation={op.activation}"
    if isinstance(op, ir.Activation):
        return f"Activation({op.activation})"
    if isinstance(op, ir.Masking):
        return f"Masking(mask_value={op.mask_value})"
    if isinstance(op, ir.Conv1D):
        return (f"Conv1D({op.output_size}, kernel_size={op.kernel_size}), strides={op.strides}, "
                f"padding={op.padding}, dilation_rate={op.dilation_rate}, groups={op.groups}, "
                f"activation={op.activation}")
    if isinstance(op, ir.Pooling1D):
        kind = "Max" if op.kind == "max" else "Average"
        if op.global_pool:
            return f"Global{kind}Pooling1D"
        return f"{kind}Pooling1D(pool_size={op.pool_size}), strides={op.strides}, padding={op.padding}"
    if isinstance(op, ir.Affine):
        return f"Affine({op.input_size}) (per-feature scale and offset: a folded BatchNormalization)"
    if isinstance(op, ir.Flatten):
        return f"Flatten(steps={op.steps})"
    if isinstance(op, ir.LayerNorm):
        return (f"LayerNorm({op.input_size or 'any'}), kind={op.kind}, epsilon={op.epsilon:g}"
                + ("" if op.gamma is not None else ", no gamma") + ("" if op.beta is not None else ", no beta"))
    if isinstance(op, ir.Standardize):
        return f"Standardize({op.input_size}) ((x - mean) / std: a Normalization layer)"
    if isinstance(op, ir.Embedding):
        return f"Embedding({op.vocab}, {op.output_size})" + (", mask_zero" if op.mask_zero else "")
    if isinstance(op, ir.Pad1D):
        return f"Pad1D(left={op.left}, right={op.right}) (negative: cropped)"
    if isinstance(op, ir.UpSample1D):
        return f"UpSample1D(size={op.size})"
    if isinstance(op, ir.Reshape):
        return f"Reshape(({op.steps}, {op.features}))"
    if isinstance(op, ir.Permute):
        return f"Permute((2, 1)) of {op.steps} timesteps"
    if isinstance(op, ir.Merge):
        return f"{op.mode.capitalize()}"
    if isinstance(op, ir.Concatenate):
        return f"Concatenate(over {op.axis})"
    return f"RepeatVector({op.n})"


def state_bytes_per_stream(spec: ir.ModelSpec) -> int:
    """Bytes of state one stream carries: float32 h, and c for LSTM, per recurrent layer; per
    streaming Conv1D or pooling, its ring of ``span - 1`` past inputs and 3 counters, or a global
    pooling's running value and count; per Cropping1D or ZeroPadding1D, its ring of the rows
    cropped at the end and 3 counters (:mod:`edgernn.kernels.window`)."""
    total = 0
    for node in spec.nodes:
        op = node.op
        if isinstance(op, ir.Pad1D):  # (one padded on the right does not stream)
            total += 0 if op.right > 0 else 4 * (max(-op.right, 0) * spec.tensor_shape(node.inputs[0])[1] + 3)
            continue
        if isinstance(op, (ir.Conv1D, ir.Pooling1D)) and (op.padding != "same" or getattr(op, "global_pool", False)):
            features = spec.tensor_shape(node.inputs[0])[1]
            if getattr(op, "global_pool", False):
                total += 4 * (features + 1)
            else:
                span = op.span if isinstance(op, ir.Conv1D) else op.pool_size
                total += 4 * ((span - 1) * features + 3)
            continue
        layers = [op.forward, op.backward] if isinstance(op, ir.Bidirectional) else [op]
        total += sum(4 * sum(layer.state_sizes) for layer in layers if isinstance(layer, ir.Recurrent))
    return total


def describe(spec: ir.ModelSpec) -> dict:
    """A JSON-ready description: layers with output shapes and parameters, totals, source."""
    layers = []
    for node in spec.nodes:
        rank, features = spec.tensor_shape(node.outputs[0])
        shape = ["batch", "T", features] if rank == 3 else ["batch", features]
        layers.append({"name": node.op.name, "op": _details(node.op), "output_shape": shape,
                       "parameters": node.op.parameter_count})
    problem = streamable_problem(spec)
    return {
        "inputs": [{"name": i.name, "shape": ["batch", "T", i.features][3 - i.rank:]} if i.dtype != "int"
                   else {"name": i.name, "shape": ["batch", "T"], "dtype": "int"} for i in spec.inputs],  # codes
        "layers": layers,
        "outputs": [{"name": o, "features": spec.tensor_shape(o)[1]} for o in spec.outputs],
        "parameters": spec.parameter_count,
        "weight_bytes": 4 * spec.parameter_count,
        "state_bytes_per_stream": state_bytes_per_stream(spec),
        "streamable": problem is None,
        "not_streamable_because": problem,
        "source": spec.source,
    }


def format_description(info: dict) -> str:
    """The description as aligned text."""
    lines = []
    src = info["source"]
    if src:
        origin = ", ".join(f"{k}={v}" for k, v in src.items() if v is not None and k != "verification")
        lines.append(f"source: {origin}")
        if isinstance(src.get("verification"), dict):
            lines.append(summary_line(src["verification"]))
    for i in info["inputs"]:
        codes = " integer codes" if i.get("dtype") == "int" else ""
        lines.append(f"input {i['name']}: ({', '.join(map(str, i['shape']))}){codes}")
    width = max([len(layer["name"]) for layer in info["layers"]] + [5])
    lines.append(f"{'layer'.ljust(width)}  {'output shape':<18}  {'params':>8}  op")
    for layer in info["layers"]:
        shape = "(" + ", ".join(map(str, layer["output_shape"])) + ")"
        lines.append(f"{layer['name'].ljust(width)}  {shape:<18}  {layer['parameters']:>8}  {layer['op']}")
    lines.append(f"parameters: {info['parameters']} ({info['weight_bytes']} bytes as float32)")
    lines.append(f"state per stream: {info['state_bytes_per_stream']} bytes")
    lines.append("streamable: yes" if info["streamable"] else f"streamable: no ({info['not_streamable_because']})")
    return "\n".join(lines)
