"""Building the IR from a chain: the ``head`` semantics, the checks that the layers chain, and the
weight reshuffles from PyTorch's layout to the IR's.

Weight reshuffles (IR layout in :mod:`edgernn.ir`): PyTorch stores ``(gates * H, in)``, the IR
``(in, gates * H)``: every matrix is transposed. LSTM rows i, f, g, o are the IR's i, f, c, o (same
order); ``bias_ih + bias_hh`` summed. GRU rows r, z, n are reordered to z, r, h; ``reset_after=True``
(PyTorch's candidate is ``tanh(W_in x + b_in + r * (W_hn h + b_hn))``); ``bias_ih`` -> ``bias`` and
``bias_hh`` -> ``recurrent_bias``, kept apart because ``b_hn`` sits inside ``r * (...)``. RNN ->
``simple`` with activation tanh or relu, biases summed. ``weight_hr`` (``proj_size``) -> the LSTM
``projection``, transposed.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ... import ir
from ...errors import UnsupportedModel
from .._conv import time_major_rows
from .._fold import fold_into_linear_maps, with_flatten_steps
from .._refusals import end_refusal
from .chain import _RNN, _Act, _Chain, _Embedding, _LayerNorm, _Linear, _Merge, _orders_that_chain, _Scale, _units
from .conv import _Conv, _Flatten, _Norm, _Pad, _Pool, _Upsample, conv_ops_of, norm_op, pool_ops_of


# The length of integer codes a model starting with nn.Embedding records as its input's (PyTorch does
# not declare one): verification runs the source on codes of this length; predict takes any.
CODES_STEPS = 16

# PyTorch's RNNBase.mode -> (IR cell, activation); plain nn.RNN modes carry the nonlinearity.
_MODES = {"LSTM": ("lstm", "tanh"), "GRU": ("gru", "tanh"), "RNN_TANH": ("simple", "tanh"),
          "RNN_RELU": ("simple", "relu")}


def _gru_rows(a: np.ndarray, h: int) -> np.ndarray:
    """PyTorch GRU gate blocks r, z, n (rows, axis 0) -> IR order z, r, h."""
    return np.concatenate([a[h:2 * h], a[:h], a[2 * h:3 * h]], axis=0)


def _recurrent_layer(rnn: _RNN, k: int, suffix: str, name: str, input_size: int, return_sequences: bool,
                     go_backwards: bool) -> ir.Recurrent:
    """IR layer of PyTorch layer ``k`` (direction ``suffix``: "" or "_reverse") of ``rnn``."""
    p = rnn.params
    h = rnn.hidden_size
    w_ih = np.asarray(p[f"weight_ih_l{k}{suffix}"], np.float64)
    w_hh = np.asarray(p[f"weight_hh_l{k}{suffix}"], np.float64)
    b_ih = p.get(f"bias_ih_l{k}{suffix}") if rnn.bias else None
    b_hh = p.get(f"bias_hh_l{k}{suffix}") if rnn.bias else None
    cell, activation = _MODES[rnn.mode]
    recurrent_bias = None
    bias = None
    if cell == "gru":
        # Gate reorder r, z, n -> z, r, h; the recurrent bias stays apart (b_hn sits inside r * (...)).
        w_ih, w_hh = _gru_rows(w_ih, h), _gru_rows(w_hh, h)
        if b_ih is not None:
            bias = _gru_rows(np.asarray(b_ih, np.float64), h)
            recurrent_bias = _gru_rows(np.asarray(b_hh, np.float64), h)
    elif b_ih is not None:
        # LSTM (i, f, g, o = IR i, f, c, o) and RNN: both biases are added outside any gate product.
        bias = np.asarray(b_ih, np.float64) + np.asarray(b_hh, np.float64)
    projection = None
    if rnn.proj_size:
        projection = ir.as_weight(np.asarray(p[f"weight_hr_l{k}{suffix}"]).T)  # (proj, H) -> (H, proj)
    return ir.Recurrent(
        name=name, cell=cell, units=h, input_size=input_size,
        kernel=ir.as_weight(w_ih.T), recurrent_kernel=ir.as_weight(w_hh.T),  # (G*H, n) -> (n, G*H)
        bias=None if bias is None else ir.as_weight(bias),
        recurrent_bias=None if recurrent_bias is None else ir.as_weight(recurrent_bias),
        activation=activation, recurrent_activation="sigmoid", reset_after=True,
        return_sequences=return_sequences, go_backwards=go_backwards, projection=projection)


def _rnn_name(rnn: _RNN, k: int) -> str:
    base = rnn.path or {"LSTM": "lstm", "GRU": "gru"}.get(rnn.mode, "rnn")
    return f"{base}_l{k}"


_TAKEN = {"registration": " in the order they are registered in __init__",
          "keys": " in the order of the state dict's keys", "calls": " in the order forward() calls them",
          "option": " in the order the option order= gives", "sizes": ""}


def _order_rule(chain: _Chain) -> Optional[str]:
    """For modules that do not chain in registration order: the rule, and the ways out."""
    if chain.order not in ("registration", "keys"):
        return None
    units = _units(chain.layers)
    names = [name for name, _ in units]
    here = f", here {names}" if len(units) > 1 else ""
    if chain.order == "registration":
        rule = (f"That order (the self.<name> = ... assignments{here}) must be the order forward() uses them: "
                "edgernn cannot see forward(), and could not read the order of its calls from a torch.fx trace or "
                "a TorchScript graph here")
        declare = "Declare the modules in __init__ in forward order"
    else:
        rule = (f"That is the order the modules were registered in __init__ (the self.<name> = ... "
                f"assignments{here}), and it must be the order forward() uses them: a state dict keeps no forward()")
        declare = "Declare the modules in __init__ in forward order and save the state dict again"
    if len(units) < 2:
        return f"{rule}. {declare}"
    fits = _orders_that_chain(units) or []
    given = (f"order={[name for name, _ in fits[0]]!r}" if len(fits) == 1
             else "order=[...] (the top-level modules in forward order)")
    return (f"{rule}. {declare} (the recurrent module before the layers it feeds), or give that order with the "
            f"option {given}")


class _Tensor(NamedTuple):
    """An IR tensor of the model being built: its name, rank (3 a sequence, 2 a vector), features
    (None for integer codes), and after PyTorch's channel-major flatten of ``(N, C, T)`` the
    ``(channels, steps)`` whose order the Linear reading it reorders its rows by."""

    name: str
    rank: int
    features: Optional[int]
    reorder: Optional[tuple] = None


def _build(chain: _Chain, head: Optional[str]) -> tuple[ir.ModelSpec, str]:
    """The ModelSpec of ``chain`` with ``head`` semantics; returns (spec, the head used).

    Each layer reads the tensors ``chain.reads`` gives (forward()'s graph), else the one before it;
    the head of the last recurrent module is ``head``, of the others ``chain.heads`` (else "every")."""
    label = chain.label
    layers = chain.layers
    head = head or chain.head
    rnns = [i for i, layer in enumerate(layers) if isinstance(layer, _RNN)]
    if not rnns and not any(isinstance(layer, _Conv) for layer in layers):
        raise UnsupportedModel(f"{label}: no recurrent module (nn.LSTM, nn.GRU, nn.RNN) or Conv1d found")
    last_rnn = rnns[-1] if rnns else len(layers)
    if not rnns:
        head = None
    elif chain.bare:
        if head not in (None, "every"):
            raise UnsupportedModel(f"{label}: a bare {layers[0].mode} module returns its output sequence; "
                                   f"head={head!r} applies to modules with a head only")
        head = "every"
    elif head is None:
        raise UnsupportedModel(
            f"{label}: how forward() passes the output of recurrent module {layers[last_rnn].path!r} on is not "
            "visible; choose it with the option head='last' (the head sees output[:, -1]), head='every' "
            "(the head runs on every step) or head='final' (the head sees h_n of the last layer, both "
            "directions concatenated)")
    heads = {index: head if index == last_rnn else (chain.heads or {}).get(layers[index].path, "every")
             for index in rnns}
    for index, rnn_head in heads.items():
        if rnn_head == "last" and layers[index].bidirectional:
            raise UnsupportedModel(
                f"{label}: head='last' on bidirectional module {layers[index].path!r} means output[:, -1], whose "
                "backward half has read only the last step; edgernn cannot compute that. Use head='final' "
                "(torch.cat([h_n[-2], h_n[-1]], 1)) or head='every'")

    problems: list[str] = []
    nodes: list[ir.Node] = []
    refusals: list[str] = []
    first = next(layer for layer in layers if isinstance(layer, (_RNN, _Linear, _LayerNorm, _Conv, _Norm, _Embedding)))
    reads = chain.reads or [(index,) for index in range(len(layers))]
    # tensors[0] is the model's (first) input, tensors[k] the output of layers[k - 1]; arguments[k]
    # forward()'s k-th argument (step -k), its features those of the first layer that reads it
    several = len(chain.input_names) > 1
    arguments = [_Tensor(name, 2 if chain.input_layout == "NC" else 3,
                         None if isinstance(first, _Embedding) else first.input_size if not several else
                         next((getattr(layers[j], "input_size", None) for j, steps in enumerate(reads) if -k in steps), None))
                 for k, name in enumerate(chain.input_names)]
    tensors = [arguments[0]]

    def tensor_of(step: int) -> _Tensor:
        return arguments[-step] if step <= 0 else tensors[step]

    for index, layer in enumerate(layers):
        where = f"module {layer.path!r}" if layer.path else "the module"
        if isinstance(layer, _Merge):
            tensors.append(_merge(layer, [tensor_of(step) for step in reads[index]], nodes, problems))
            continue
        tensor, rank, features, reorder = tensor_of(reads[index][0])
        if isinstance(layer, _RNN):
            if features is not None and features != layer.input_size:
                problems.append(f"{where} takes {layer.input_size} features but gets {features}")
            if rank != 3:
                problems.append(f"{where} reads a sequence, but it comes after the head collapsed the time axis")
            size = layer.input_size
            for k in range(layer.num_layers):
                name = _rnn_name(layer, k)
                sequences = not (k == layer.num_layers - 1 and heads[index] in ("last", "final"))
                forward = _recurrent_layer(layer, k, "", name, size, sequences, False)
                if layer.bidirectional:
                    backward = _recurrent_layer(layer, k, "_reverse", name + "_reverse", size, sequences, True)
                    op = ir.Bidirectional(name, forward, backward, "concat")
                else:
                    op = forward
                out = f"{name}:0"
                nodes.append(ir.Node(op, (tensor,), (out,)))
                tensor, size = out, op.output_size
                if not sequences:
                    rank = 2
            features = size
        elif isinstance(layer, _Embedding):
            if index:
                problems.append(f"{where} (Embedding) comes after another layer; edgernn's Embedding reads the "
                                "model's input, integer codes")
            op = ir.Embedding(layer.path or "embedding", ir.as_weight(layer.weight))
            nodes.append(ir.Node(op, (tensor,), (f"{op.name}:0",)))
            tensor, features = f"{op.name}:0", layer.output_size
        elif isinstance(layer, _Linear):
            weight = np.asarray(layer.weight)
            if reorder is not None:  # after PyTorch's channel-major flatten of (N, C, T)
                weight, reorder = time_major_rows(weight.T, reorder[0]).T, None
            if features is not None and features != layer.input_size:
                problems.append(f"{where} (Linear) takes {layer.input_size} features but gets {features}")
            bias = None if layer.bias is None else ir.as_weight(layer.bias)
            op = ir.Dense(layer.path or "linear", ir.as_weight(weight.T), bias)
            out = f"{op.name}:0"
            nodes.append(ir.Node(op, (tensor,), (out,)))
            tensor, features = out, layer.output_size
        elif isinstance(layer, _LayerNorm):
            if features is not None and features != layer.input_size:
                problems.append(f"{where} (LayerNorm) normalizes {layer.input_size} features but gets {features}")
            if reorder is not None:  # its weight and bias would follow PyTorch's channel-major columns
                problems.append(f"{where} (LayerNorm) right after flattening an (N, C, T) tensor is not supported")
            op = ir.LayerNorm(layer.path or "layer_norm", "layer", layer.eps,
                              *(None if a is None else ir.as_weight(a) for a in (layer.weight, layer.bias)))
            out = f"{op.name}:0"
            nodes.append(ir.Node(op, (tensor,), (out,)))
            tensor, features = out, layer.input_size
        elif isinstance(layer, _Act):
            if layer.dim is not None and layer.dim not in (-1, rank - 1):
                problems.append(f"{where}: {layer.activation} over dim={layer.dim} of a rank-{rank} tensor is not "
                                "over the feature (last) axis; only dim=-1 is supported")
            # after a Linear or Conv1d: their own activation (importers._fold)
            op = ir.Activation(layer.path or "activation", layer.activation)
            out = f"{op.name}:0"
            nodes.append(ir.Node(op, (tensor,), (out,)))
            tensor = out
        elif isinstance(layer, _Scale):
            if features is None:
                problems.append(f"{where} scales forward()'s argument before any layer reads it (which says its "
                                "features)")
            else:
                op = ir.Affine(layer.path, *(ir.as_weight(np.full(features, v)) for v in (layer.scale, layer.offset)))
                out = f"{op.name}:0"
                nodes.append(ir.Node(op, (tensor,), (out,)))
                tensor = out
        elif isinstance(layer, (_Conv, _Pool, _Norm, _Flatten, _Pad, _Upsample)):
            readers = [layers[j] for j in range(index + 1, len(layers)) if index + 1 in reads[j]]
            made = _front_end(layer, f"{where} ({type(layer).__name__.strip('_')})", nodes, tensor, rank, features,
                              readers, refusals)
            if made is None:
                raise end_refusal(UnsupportedModel(f"{label}: cannot convert", refusals), "docs/pytorch.md")
            tensor, rank, features, reorder = made
        tensors.append(_Tensor(tensor, rank, features, reorder))
    if problems:
        error = UnsupportedModel(f"{label}: the modules do not chain{_TAKEN[chain.order]}", problems)
        raise end_refusal(error, "docs/pytorch.md", _order_rule(chain))
    source = {"format": "pytorch", **chain.source, "head": head}
    # Integer codes: an int input, its features the T verification runs (predict takes any T).
    if isinstance(first, _Embedding):
        inputs = (ir.Input("x", CODES_STEPS, rank=2, dtype="int"),)
    elif any(t.features is None for t in arguments):  # (an argument merged before any layer reads it)
        raise UnsupportedModel(f"{label}: forward()'s argument(s) {', '.join(repr(t.name) for t in arguments if t.features is None)} "
                               "reach a merge before any layer, which says their features")
    else:
        inputs = tuple(ir.Input(t.name, t.features) for t in arguments)
    spec = ir.ModelSpec(inputs, tuple(nodes), (tensors[-1].name,), source)
    return fold_into_linear_maps(with_flatten_steps(spec)), head


def _merge(layer: _Merge, inputs: list, nodes: list, problems: list[str]) -> _Tensor:
    """Append the IR Merge (or Concatenate over the features) of ``inputs``; its output."""
    where = f"forward()'s {layer.path}"
    op = ir.Concatenate(layer.path, "features") if layer.mode == "concatenate" else ir.Merge(layer.path, layer.mode)
    nodes.append(ir.Node(op, tuple(t.name for t in inputs), (f"{op.name}:0",)))
    sizes = [t.features for t in inputs]
    if len({t.rank for t in inputs}) > 1:
        problems.append(f"{where} merges a sequence with a vector")
    if any(t.reorder is not None for t in inputs):
        problems.append(f"{where} merges a flattened (N, C, T) tensor, whose features PyTorch orders channel-major; "
                        "flatten after the merge")
    if layer.mode == "concatenate":
        return _Tensor(op.name + ":0", inputs[0].rank, None if None in sizes else sum(sizes))
    if len(set(sizes)) > 1:
        problems.append(f"{where} merges tensors of {sizes} features element-wise")
    return _Tensor(op.name + ":0", inputs[0].rank, sizes[0])


def _front_end(layer, where: str, nodes: list, tensor: str, rank: int, features, after: list, problems: list[str]):
    """Append the IR of a convolutional front-end ``layer`` reading ``tensor`` (of ``rank`` and
    ``features``); returns (tensor, rank, features, reorder) or None (+ problems)."""
    if isinstance(layer, _Norm):
        if features is not None and features != layer.input_size:
            problems.append(f"{where} (BatchNorm1d) normalizes {layer.input_size} channels but gets {features}")
            return None
        op = norm_op(layer)  # folded into a Conv1d or Linear right before by importers._fold
        nodes.append(ir.Node(op, (tensor,), (f"{op.name}:0",)))
        return f"{op.name}:0", rank, features, None
    if rank != 3:
        problems.append(f"{where} reads a sequence, but the time axis is already gone")
        return None
    if isinstance(layer, _Conv) and features is not None and features != layer.input_size:
        problems.append(f"{where} (Conv1d) takes {layer.input_size} channels but gets {features}")
        return None
    if isinstance(layer, (_Conv, _Pool, _Pad, _Upsample)):
        ops = (conv_ops_of(layer) if isinstance(layer, _Conv) else pool_ops_of(layer) if isinstance(layer, _Pool)
               else [ir.UpSample1D(layer.path or "upsample", layer.size)] if isinstance(layer, _Upsample)
               else [ir.Pad1D(layer.path or "pad", layer.left, layer.right)])
        for op in ops:
            nodes.append(ir.Node(op, (tensor,), (f"{op.name}:0",)))
            tensor = f"{op.name}:0"
        global_pool = isinstance(layer, _Pool) and layer.global_pool
        return tensor, 2 if global_pool else 3, getattr(ops[-1], "output_size", features), None
    # Flatten of a sequence: its fixed length is what the Linear after it reads.
    following = after[0] if after else None
    if not isinstance(following, _Linear) or features is None or following.input_size % features:
        problems.append(f"{where}: flattening a sequence is supported only right before a Linear whose "
                        f"in_features are a multiple of the {features} channels (that fixes the length)")
        return None
    steps = following.input_size // features
    op = ir.Flatten(layer.path, steps)
    nodes.append(ir.Node(op, (tensor,), (f"{op.name}:0",)))
    return f"{op.name}:0", 2, steps * features, (features, steps) if layer.channel_major else None

