"""The weights of a file: every weight array read from its HDF5 data within bounds, then found again
by layer (``_ZipWeights`` for a ``.keras`` archive, ``_LegacyWeights`` for a legacy ``.h5``; where
each keeps them is described in the container module)."""

from __future__ import annotations

from typing import Any, Optional

import h5py
import numpy as np

from ...errors import InvalidModelFile
from .answer import _Failure

# Bounds on what a hostile file can make us allocate (issue #6), held against a dataset's declared
# size before it is read (the container module bounds the zip members).
_MAX_ARRAY_BYTES = 1 << 30    # one weight dataset once read (HDF5 datasets can be compressed)
_MAX_ARRAYS_BYTES = 4 << 30   # all weight datasets read from one file


def _text(value) -> str:
    """An HDF5 attribute as str (h5py returns str, bytes or 0-d numpy arrays depending on writer)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)


def _h5_list_attr(group, name: str) -> list[str]:
    """A list-of-strings attribute; Keras splits long ones into ``name0``, ``name1``, ... chunks."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks, k = [], 0
        while f"{name}{k}" in group.attrs:
            chunks.append(group.attrs[f"{name}{k}"])
            k += 1
    return [_text(v) for chunk in chunks for v in np.atleast_1d(chunk)]


class _Weights:
    """Weight arrays read from an HDF5 file, within the size bounds.

    Everything the converter may ask for is read when the object is built (in the child process,
    see :func:`_read_isolated`), into plain numpy arrays; the HDF5 file is closed before the
    converter runs. A dataset or group that cannot be read keeps its error (a :class:`_Failure`),
    raised when the converter fetches it, as when the file was read lazily: a damaged weight of a
    layer the converter never asks for does not stop the conversion.
    """

    def __init__(self, label: str):
        self.label = label
        self.bytes_read = 0

    def array(self, dataset, where: str) -> np.ndarray:
        """A numeric dataset's values; its declared size is checked before anything is read, since a
        compressed (or never written) HDF5 dataset can declare any shape."""
        if not isinstance(dataset, h5py.Dataset):
            raise InvalidModelFile(f"{self.label}: {where} is not a dataset")
        try:
            dtype, size = dataset.dtype, dataset.size
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidModelFile(f"{self.label}: cannot read {where}: {exc}") from exc
        if dtype.kind not in "fiu":  # integers: Normalization's count (the converter refuses them elsewhere)
            raise InvalidModelFile(f"{self.label}: {where} holds {dtype} values, expected numbers")
        nbytes = int(size or 0) * dtype.itemsize
        if nbytes > _MAX_ARRAY_BYTES:
            raise InvalidModelFile(f"{self.label}: {where} declares {nbytes} bytes, over the {_MAX_ARRAY_BYTES} limit")
        if self.bytes_read + nbytes > _MAX_ARRAYS_BYTES:
            raise InvalidModelFile(f"{self.label}: the weights add up to over the {_MAX_ARRAYS_BYTES} limit (at {where})")
        self.bytes_read += nbytes
        try:
            array = dataset[()]
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidModelFile(f"{self.label}: cannot read {where}: {exc}") from exc
        return np.asarray(array)


_WEIGHT_ROOTS = ("layers", "_layer_checkpoint_dependencies")


class _ZipWeights(_Weights):
    """Variables of a ``.keras`` file: ``layers/<path>/{vars, cell/vars, forward_layer/cell/vars, ...}``.

    Every ``vars`` group below ``layers`` (tf-keras 2.13-2.15: ``_layer_checkpoint_dependencies``)
    is read when built; ``fetch`` looks them up.
    """

    def __init__(self, h5, label: str):
        super().__init__(label)
        # Keras >= 3.10 writes the owning layer's name on each top-level vars group.
        self.by_name: dict[str, str] = {}
        self.vars: dict[str, Any] = {}  # "layers/lstm/cell/vars" -> [(key, array)] or _Failure
        for root in _WEIGHT_ROOTS:
            if root in h5:
                for key, group in h5[root].items():
                    if isinstance(group, h5py.Group) and "vars" in group and "name" in group["vars"].attrs:
                        self.by_name.setdefault(_text(group["vars"].attrs["name"]), f"{root}/{key}")

                def visit(name, obj, root=root):
                    if name.rsplit("/", 1)[-1] == "vars":
                        where = f"{root}/{name}"
                        try:
                            self.vars[where] = self._read_vars(obj, where)
                        except Exception as exc:  # noqa: BLE001 - raised again by fetch, if asked for
                            self.vars[where] = _Failure(exc)

                h5[root].visititems(visit)  # hard links only: no soft or external link is followed

    def _read_vars(self, group, where: str) -> list[tuple[str, np.ndarray]]:
        try:
            keys = sorted(group.keys(), key=int)
        except ValueError:
            raise InvalidModelFile(f"{self.label}: unexpected variable names in {where}: {list(group.keys())}")
        return [(k, self.array(group[k], where)) for k in keys]

    def fetch(self, layer: str, key: str, part: tuple[str, ...]) -> Optional[list[tuple[str, np.ndarray]]]:
        """Arrays of ``vars`` under ``<layer path>/<part...>`` in saved order, or None if absent.

        ``key`` is the path Keras derives from class names; ``layer`` the layer's name, used when
        the file records names.
        """
        candidates = [self.by_name[layer]] if layer in self.by_name else []
        # tf-keras 2.13-2.15 wrote "_layer_checkpoint_dependencies" where later versions write "layers".
        candidates += [f"{root}/{key}" for root in _WEIGHT_ROOTS]
        for base in candidates:
            where = "/".join((base,) + part + ("vars",))
            if where in self.vars:
                found = self.vars[where]
                if isinstance(found, _Failure):
                    found.reraise()
                return list(found)
        return None


class _LegacyWeights(_Weights):
    """Variables of a legacy ``.h5``: ``model_weights/<layer name>/<weight name>`` in ``weight_names`` order.

    Every layer group of ``model_weights`` is read when built; ``fetch`` looks them up.
    """

    def __init__(self, root, label: str):
        super().__init__(label)
        self.layers: dict[str, Any] = {}  # layer name -> [(weight name, array)] or _Failure
        for layer in root.keys():
            try:
                if isinstance(root.get(layer, getlink=True), h5py.ExternalLink):
                    raise InvalidModelFile(f"{label}: model_weights/{layer} is a link to another file")
                self.layers[layer] = self._read_layer(root[layer], layer)
            except Exception as exc:  # noqa: BLE001 - raised again by fetch, if asked for
                self.layers[layer] = _Failure(exc)

    def _read_layer(self, group, layer: str) -> list[tuple[str, np.ndarray]]:
        try:
            return [(n, self.array(group[n], f"model_weights/{layer}/{n}")) for n in _h5_list_attr(group, "weight_names")]
        except KeyError as exc:
            raise InvalidModelFile(f"{self.label}: layer {layer!r} lists a weight that is not stored: {exc}") from exc

    def fetch(self, layer: str, key: str, part: tuple[str, ...]) -> Optional[list[tuple[str, np.ndarray]]]:
        """The layer's weights (name, array) in saved order; ``part`` ("forward"/"backward") selects
        one direction of a Bidirectional layer. None if the layer has no group."""
        if layer not in self.layers:
            return None
        items = self.layers[layer]
        if isinstance(items, _Failure):
            items.reraise()
        if part and part[0] in ("forward_layer", "backward_layer"):
            # Bidirectional saves forward weights then backward weights; the names carry
            # "forward_<layer>" / "backward_<layer>" components, which decide when they agree.
            prefix = part[0].split("_")[0] + "_"
            tagged = [it for it in items if any(c.startswith(prefix) for c in it[0].split("/")[:-1])]
            if 2 * len(tagged) == len(items):
                return tagged
            half = len(items) // 2
            return items[:half] if prefix == "forward_" else items[half:]
        return list(items)
