"""Reading files: ``.pt``/``.pth`` (a state dict or a TorchScript archive) and ``.safetensors``, and
their entry points :func:`load_torch_file` and :func:`load_safetensors_file`.

A ``.pt``/``.pth`` file is a TorchScript archive when its zip holds a ``code/`` folder (read with
``torch.jit.load``); otherwise it is a state dict, read with the package's one unpickling call,
restricted to weights (:func:`_load_weights_only`). A ``.safetensors`` file is read with
the ``safetensors`` package's NumPy API, without torch.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

from ... import ir
from ...errors import InvalidModelFile, UnsupportedModel
from .._refusals import points_to
from .build import _build
from .chain import _Chain
from .modules import _chain_from_module, _class_name, _numpy
from .options import _check_options, _head_option
from .state_dict import _chain_from_state_dict


def _tensor_state(obj, label: str) -> dict:
    """The ``{name: numpy array}`` of a loaded state dict (or of the one state dict in a checkpoint)."""
    import torch

    def is_state(d):
        return isinstance(d, dict) and d and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())

    if is_state(obj):
        return {k: _numpy(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        nested = [k for k, v in obj.items() if is_state(v)]
        if len(nested) == 1:  # a checkpoint {"model_state_dict": ..., "epoch": ...}
            return {k: _numpy(v) for k, v in obj[nested[0]].items()}
    raise InvalidModelFile(f"{label}: the file holds a {type(obj).__name__}, not a state dict of tensors "
                           "(save model.state_dict() or a TorchScript module)")


def _load_weights_only(torch, path):
    """The object saved in ``.pt``/``.pth`` file ``path`` (``torch`` is the imported module): the
    package's one unpickling call."""
    # weights_only=True: tensors and plain containers only. A file that holds a pickled
    # module or any other object is refused here, before any of its code could run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Detected pickle protocol 4 ..." for a plain pickle file
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``<archive>/code/`` folder (torch.save's has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(len(parts) > 2 and parts[1] == "code" for parts in (n.split("/") for n in archive.namelist()))


def _load_torch(path: Path, options: dict):
    """(kind, object): ("script", ScriptModule) or ("state", {name: numpy array})."""
    try:
        import torch
    except ImportError as exc:
        raise UnsupportedModel(f"{path.name}: reading a .pt/.pth file needs torch (pip install edgernn[torch]); "
                               "a .safetensors state dict needs only the safetensors package") from exc
    label = path.name
    if _is_torchscript(path):
        try:
            return "script", torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - a malformed archive
            raise InvalidModelFile(f"{label}: not a loadable TorchScript archive: {exc}") from exc
    try:
        obj = _load_weights_only(torch, path)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        # torch's message suggests turning the restriction off; keep only the line that says what was refused.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        found = [line for line in lines if "Unsupported" in line] or [line for line in lines if "Unpickler" in line]
        first = (found or lines or [type(exc).__name__])[0]
        first = re.sub(r"\x1b\[[0-9;]*m", "", first)[:300]
        raise InvalidModelFile(
            f"{label}: not a state dict that loads with weights_only=True ({first}); edgernn never unpickles "
            "arbitrary objects: save model.state_dict() with torch.save, or a TorchScript module") from exc
    return "state", _tensor_state(obj, label)


def _file_chain(path, options: dict) -> tuple[_Chain, object]:
    path = Path(path)
    kind, obj = _load_torch(path, options)
    import torch

    source = {"file": path.name, "framework_version": torch.__version__}
    if kind == "script":
        label = f"{path.name} (TorchScript {_class_name(obj)})"
        return _chain_from_module(obj, options, label, {**source, "container": "torchscript"},
                                  _head_option(options)), obj
    label = f"{path.name} (state dict)"
    return _chain_from_state_dict(obj, options, label, True, {**source, "container": "state_dict"}), obj


@points_to("docs/pytorch.md")
def load_torch_file(path, **options) -> ir.ModelSpec:
    """Read a ``.pt``/``.pth`` file: a state dict saved with ``torch.save`` or a TorchScript archive.

    Options (see the package docstring): ``head``, ``nonlinearity``, ``mode``, ``batch_first``,
    ``activations``, ``order``.
    """
    _check_options(options, "load_torch_file")
    head = _head_option(options)
    chain, _ = _file_chain(path, options)
    return _build(chain, head)[0]


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors.numpy import load_file
    except ImportError as exc:
        raise UnsupportedModel(f"{path.name}: reading .safetensors needs the safetensors package "
                               "(pip install edgernn[safetensors])") from exc
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, bad header, unsupported dtype
        raise InvalidModelFile(f"{path.name}: not a readable safetensors file: {exc}") from exc
    bad = [k for k, v in state.items() if v.dtype.kind != "f"]
    if bad:
        raise InvalidModelFile(f"{path.name}: non-float tensors {bad}")
    return state


@points_to("docs/pytorch.md")
def load_safetensors_file(path, **options) -> ir.ModelSpec:
    """Read a ``.safetensors`` state dict (no torch needed); the same inference as for ``.pt`` files.

    safetensors keeps no key order, so the modules' order is the one in which their sizes chain
    (or the ``order`` option).
    """
    _check_options(options, "load_safetensors_file")
    head = _head_option(options)
    path = Path(path)
    state = _read_safetensors(path)
    chain = _chain_from_state_dict(state, options, f"{path.name} (safetensors state dict)", False,
                                   {"file": path.name, "container": "safetensors"})
    return _build(chain, head)[0]
