"""The normalization layers over the features of each timestep: LayerNormalization (Keras 3's and
tf-keras's; Keras 3's deprecated ``rms_scaling``), RMSNormalization (Keras 3) and the preprocessing
Normalization, adapted or given its mean and variance. The mask passes through them, as in Keras.
(BatchNormalization, folded into an Affine, is in ``conv``.) RMSNormalization, which Keras 3 does not let
masks through, drops the mask as Keras does.

Normalization's ``std = max(sqrt(variance), epsilon)`` uses Keras's default ``epsilon`` 1e-7
(``keras.config.epsilon()``, not saved in the file), computed in float32 as Keras does. Its
``invert=True`` form, ``mean + x * std``, is an Affine, computed in the same order, and so is the
preprocessing Rescaling, ``x * scale + offset`` (each a number or, in Keras 3, an array per feature).
"""

from __future__ import annotations

import numpy as np

from ... import ir
from .graph import _Data

KERAS_EPSILON = np.float32(1e-7)


def _axes(value) -> tuple:
    """A config's ``axis`` (an int, a list of ints, or None for every axis) as a tuple of ints."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _config_numbers(value):
    """A config's number, or Keras 3's serialized numpy array ``{"class_name": "__numpy__", ...}``, as a
    float32 array; None if it is neither."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        value = (value.get("config") or {}).get("value")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged lists
        return None
    # numbers only: numpy would read "2" and True as numbers too
    return array.astype(np.float32) if array.dtype.kind in "iuf" and array.ndim <= 1 else None


class _NormalizationHandlers:
    """Handlers of LayerNormalization, RMSNormalization, Normalization and Rescaling. A mixin of
    ``_Converter``: uses its ``nodes``, ``_data_input``, ``_op_name`` and ``_fetch``."""

    def _last_axis(self, cfg, default, x, where, problems, allow_all=False) -> bool:
        axes = _axes(cfg.get("axis", default))
        if not all(type(a) is int for a in axes):
            problems.append(f"{where}: axis={cfg.get('axis')!r} is not an axis")
            return False
        if x is not None and tuple(a % x.rank for a in axes if -x.rank <= a < x.rank) != (x.rank - 1,) \
                and not (allow_all and axes == ()):
            problems.append(f"{where}: axis={cfg.get('axis')!r} is not supported (the last, feature axis only)")
            return False
        return True

    def _epsilon(self, cfg, default, where, problems):
        epsilon = cfg.get("epsilon", default)
        if type(epsilon) not in (int, float) or not epsilon >= 0:
            problems.append(f"{where}: epsilon {epsilon!r} is not a non-negative number")
            return None
        return float(epsilon)

    def _norm_node(self, op, x: _Data, keeps_mask: bool = True) -> list:
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, x.rank, x.features, x.timesteps, x.mask if keeps_mask else None)]

    def _layer_normalization(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        rms = entry["class_name"] == "RMSNormalization"
        epsilon = self._epsilon(cfg, 1e-6 if rms else 1e-3, where, problems)
        x = None if dry else self._data_input(call, where, problems)
        self._last_axis(cfg, -1, x, where, problems)
        if dry or problems or x is None:
            return None
        if rms:  # keras.layers.RMSNormalization: x / sqrt(mean(x^2) + epsilon) * scale
            kind, roles, gamma_role = "rms", ["scale"], "scale"
        else:
            rms_scaling = bool(cfg.get("rms_scaling", False))  # Keras 3 only; then gamma always, no beta
            kind = "rms_scaling" if rms_scaling else "layer"
            roles = ((["gamma"] if cfg.get("scale", True) or rms_scaling else [])
                     + (["beta"] if cfg.get("center", True) and not rms_scaling else []))
            gamma_role = "gamma"
        w = self._fetch(name, (), roles, where)
        if w is None or not all(self._shape(where, role, w[role], (x.features,)) for role in roles):
            return None
        op = ir.LayerNorm(name=self._op_name(name, k), kind=kind, epsilon=epsilon,
                          gamma=ir.as_weight(w[gamma_role]) if gamma_role in w else None,
                          beta=ir.as_weight(w["beta"]) if "beta" in w else None)
        # Keras 3's RMSNormalization does not support masking: Keras drops the mask there (and warns)
        return self._norm_node(op, x, keeps_mask=not rms)

    def _normalization(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        x = None if dry else self._data_input(call, where, problems)
        self._last_axis(cfg, -1, x, where, problems, allow_all=True)
        if dry or problems or x is None:
            return None
        if cfg.get("mean") is not None or cfg.get("variance") is not None:  # given in the config
            try:
                mean, variance = (np.asarray(cfg.get(key), dtype=np.float32) for key in ("mean", "variance"))
            except (TypeError, ValueError):
                problems.append(f"{where}: mean and variance are not numbers")
                return None
        else:  # adapted: weights mean, variance, count (an integer, unused)
            w = self._fetch(name, (), ["mean", "variance", "count"], where)
            if w is None:
                return None
            mean, variance = (np.asarray(w[key], dtype=np.float32) for key in ("mean", "variance"))
        if mean.size not in (1, x.features) or mean.shape != variance.shape or mean.ndim > 1:
            self.invalid.append(f"{where}: mean and variance have shapes {mean.shape} and {variance.shape}, "
                                f"expected one of () or ({x.features},)")
            return None
        with np.errstate(invalid="ignore"):  # a negative variance: NaN, which the IR refuses
            std = np.maximum(np.sqrt(variance), KERAS_EPSILON) * np.ones(x.features, np.float32)
        mean = mean * np.ones(x.features, np.float32)
        op_name = self._op_name(name, k)
        if cfg.get("invert", False):  # mean + x * std
            op = ir.Affine(name=op_name, scale=ir.as_weight(std), offset=ir.as_weight(mean))
        else:
            op = ir.Standardize(name=op_name, mean=ir.as_weight(mean), std=ir.as_weight(std))
        return self._norm_node(op, x)

    def _rescaling(self, entry, call, k, where, problems, dry):
        """``Rescaling(scale, offset)``: ``x * scale + offset``, an Affine; the mask passes through."""
        cfg = entry["config"]
        factors = {key: _config_numbers(cfg.get(key, default)) for key, default in (("scale", None), ("offset", 0.0))}
        for key, value in factors.items():
            if value is None:
                problems.append(f"{where}: {key}={cfg.get(key)!r} is not a number or a vector of numbers")
        x = None if dry else self._data_input(call, where, problems)
        if dry or problems or x is None:
            return None
        for key, value in factors.items():
            if value.size not in (1, x.features):
                self.invalid.append(f"{where}: {key} has {value.size} values for {x.features} features")
                return None
        ones = np.ones(x.features, np.float32)
        op = ir.Affine(name=self._op_name(cfg.get("name", entry.get("name")), k),
                       scale=ir.as_weight(factors["scale"] * ones), offset=ir.as_weight(factors["offset"] * ones))
        return self._norm_node(op, x)
