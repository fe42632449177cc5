"""PyTorch importer: ``nn.Module`` objects, ``.pt``/``.pth`` files (state_dict or TorchScript) and
``.safetensors`` state dicts -> :class:`~edgernn.ir.ModelSpec`.

The conversion lives in :mod:`.state_dict`; this package re-exports its entry points and holds the
one call that unpickles a file, restricted to weights.
"""

from __future__ import annotations

import warnings

from .state_dict import from_torch_module, load_safetensors_file, load_torch_file, run_source

__all__ = ["from_torch_module", "load_torch_file", "load_safetensors_file", "run_source"]


def _load_weights_only(torch, path):
    """The object of ``.pt``/``.pth`` file ``path``, read with ``torch.load(..., weights_only=True)``.

    This is the only place the importer unpickles a file; it lives in the package's own module so
    that whoever reads the package (and the check that reads its source) finds it here.
    """
    # weights_only=True: tensors and plain containers only. A file that holds a pickled
    # module or any other object is refused here, before any of its code could run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Detected pickle protocol 4 ..." for a plain pickle file
        return torch.load(str(path), map_location="cpu", weights_only=True)
