"""Running the source for verification: :func:`run_source`, the source model run by PyTorch itself.

A live module or a TorchScript file runs its own ``forward``; a state dict runs PyTorch's own modules
rebuilt from it by the same mapping rules (``_rebuilt_run``), so that a wrong gate order or bias in
the conversion shows against PyTorch's arithmetic, not against edgernn's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .build import _build
from .chain import _RNN, _Chain, _Embedding, _LayerNorm, _Linear
from .files import _file_chain, _read_safetensors
from .modules import _chain_from_module, _class_name
from .options import _check_options, _head_option
from .state_dict import _chain_from_state_dict


_TORCH_ACTIVATIONS = {
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "relu6": "relu6", "selu": "selu", "silu": "silu",
    "mish": "mish", "softsign": "softsign", "log_sigmoid": "logsigmoid", "tanh_shrink": "tanhshrink",
    "hard_sigmoid": "hardsigmoid", "hard_silu": "hardswish", "elu": "elu", "celu": "celu", "softplus": "softplus",
    "hard_tanh": "hardtanh", "gelu": "gelu", "linear": None,
}


def _apply_activation(torch, name: str, y):
    F = torch.nn.functional
    if name == "softmax":
        return torch.softmax(y, -1)
    if name == "log_softmax":
        return torch.log_softmax(y, -1)
    if name == "leaky_relu":
        return F.leaky_relu(y, 0.2)
    if name == "hard_sigmoid_keras2":
        return torch.clamp(0.2 * y + 0.5, 0.0, 1.0)
    if name == "exponential":
        return torch.exp(y)
    fn = _TORCH_ACTIVATIONS.get(name)
    return y if fn is None else getattr(F, fn)(y)


def _rebuilt_run(chain: _Chain, head: str, x):
    """Run ``chain`` with PyTorch's own modules (rebuilt from the state dict), batch-first."""
    import torch

    y = x
    rnns = [i for i, layer in enumerate(chain.layers) if isinstance(layer, _RNN)]
    for index, layer in enumerate(chain.layers):
        if isinstance(layer, _RNN):
            cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(layer.mode, torch.nn.RNN)
            kwargs = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=True,
                          bidirectional=layer.bidirectional)
            if layer.mode == "LSTM":
                kwargs["proj_size"] = layer.proj_size
            if layer.mode.startswith("RNN_"):
                kwargs["nonlinearity"] = layer.mode[4:].lower()
            module = cls(layer.input_size, layer.hidden_size, **kwargs).double()
            module.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in layer.params.items()})
            out, states = module(y)
            h_n = states[0] if layer.mode == "LSTM" else states
            y = out
            if index == rnns[-1] and head == "last":
                y = out[:, -1]
            elif index == rnns[-1] and head == "final":
                y = torch.cat([h_n[-2], h_n[-1]], 1) if layer.bidirectional else h_n[-1]
        elif isinstance(layer, _Embedding):
            y = torch.nn.functional.embedding(y.long(), torch.from_numpy(np.asarray(layer.weight, np.float64)))
        elif isinstance(layer, _LayerNorm):
            w, b = (None if a is None else torch.from_numpy(np.asarray(a, np.float64)) for a in (layer.weight, layer.bias))
            y = torch.nn.functional.layer_norm(y, (layer.input_size,), w, b, layer.eps)
        elif isinstance(layer, _Linear):
            w = torch.from_numpy(np.asarray(layer.weight, np.float64))
            b = None if layer.bias is None else torch.from_numpy(np.asarray(layer.bias, np.float64))
            y = torch.nn.functional.linear(y, w, b)
        else:
            y = _apply_activation(torch, layer.activation, y)
    return y


_TO_TORCH = {"NCT": (0, 2, 1), "TNC": (1, 0, 2), "TN": (1, 0)}  # the IR's (batch, T, C) -> PyTorch's layout, and back


def _layouts(chain: _Chain, head: str) -> tuple[str, str]:
    """How PyTorch lays out the chain's input and output: read from forward() where it was, else as
    the first recurrent module's ``batch_first`` says."""
    if chain.input_layout is not None:
        return chain.input_layout, chain.output_layout
    batch_first = next(layer.batch_first for layer in chain.layers if isinstance(layer, _RNN))
    sequence = "NTC" if batch_first else "TNC"
    codes = "NT" if batch_first else "TN"
    return codes if isinstance(chain.layers[0], _Embedding) else sequence, sequence if head == "every" else "NC"


def _run_module(torch, module, chain: _Chain, head: str, xs: list) -> np.ndarray:
    """Run a live or TorchScript module on ``xs`` (one (batch, T, F) array per forward() argument)
    laid out as it wants."""
    into, out_of = _layouts(chain, head)
    dtype = torch.long if into in ("NT", "TN") else next((p.dtype for p in module.parameters()), torch.float32)
    inps = [torch.from_numpy(np.asarray(x, np.float32)).to(dtype) for x in xs]  # codes as predict takes them
    if into in _TO_TORCH:
        inps = [inp.permute(*_TO_TORCH[into]) for inp in inps]
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(*inps)
    finally:
        module.train(training)
    while isinstance(out, (tuple, list)):
        out = out[0]
    if out_of in _TO_TORCH:
        out = out.permute(*_TO_TORCH[out_of])
    return out.detach().cpu().float().numpy()


def run_source(source, inputs, **options) -> list[np.ndarray]:
    """Run the source with PyTorch on ``inputs`` (one (batch, T, features) array, or a list of one per
    forward() argument); [output] as float32.

    A module or TorchScript file runs its own ``forward``; a state dict runs PyTorch's modules rebuilt
    from it with the same mapping rules. Shapes are those of ``predict``. Raises ImportError without torch.
    """
    import torch

    _check_options(options, "run_source")
    head = _head_option(options)
    xs = [np.asarray(x, np.float32) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    x = xs[0]
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        path = Path(source)
        if path.suffix.lower() == ".safetensors":
            state = _read_safetensors(path)
            chain = _chain_from_state_dict(state, options, path.name, False, {})
            module = None
        else:
            chain, obj = _file_chain(path, options)
            module = obj if not isinstance(obj, dict) else None
    else:
        label = f"PyTorch module {_class_name(source)}"
        chain = _chain_from_module(source, options, label, {}, head)
        module = source
    _, head = _build(chain, head)
    if module is not None:
        return [_run_module(torch, module, chain, head, xs)]
    with torch.no_grad():
        y = _rebuilt_run(chain, head, torch.from_numpy(x.astype(np.float64)))
    return [y.numpy().astype(np.float32)]
