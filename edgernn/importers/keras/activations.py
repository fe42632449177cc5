"""Activations: Keras activation names (and serialized functions) to IR names, by the Keras version
that saved the file, and the layers that are an activation (Activation, ReLU, LeakyReLU, ELU,
Softmax), accepted only where they equal an IR activation's definition.

The Keras version that saved the file decides ``hard_sigmoid``: Keras 3's is ``relu6(x + 3) / 6``,
Keras 2's ``clip(0.2 x + 0.5, 0, 1)`` (IR name ``hard_sigmoid_keras2``).
"""

from __future__ import annotations

import math
from typing import Optional

from ... import ir
from .graph import _Data

# Keras 3 names -> IR names. The IR uses Keras 3's names and definitions, so most map to
# themselves; "swish" and "hard_swish" are Keras 3 aliases of silu and hard_silu.
_KERAS3_ACTIVATIONS = {name: name for name in ir.ELEMENTWISE_ACTIVATIONS + ir.VECTOR_ACTIVATIONS}
del _KERAS3_ACTIVATIONS["hard_sigmoid_keras2"]
_KERAS3_ACTIVATIONS.update({"swish": "silu", "hard_swish": "hard_silu"})

# Keras 2 (tf.keras / tf-keras) names -> IR names, only those whose Keras 2 definition equals the
# IR's: hard_sigmoid differs (Keras 2: clip(0.2 x + 0.5, 0, 1)), "swish" is Keras 2's name of silu.
_KERAS2_ACTIVATIONS = {
    name: name
    for name in (
        "linear", "tanh", "sigmoid", "relu", "relu6", "elu", "selu", "softplus", "softsign",
        "exponential", "gelu", "mish", "softmax", "log_softmax", "silu",
    )
}
_KERAS2_ACTIVATIONS.update({"hard_sigmoid": "hard_sigmoid_keras2", "swish": "silu"})


class _ActivationHandlers:
    """Keras activations to IR names (``_activation``, which every layer family uses) and the
    handlers of the activation layers. A mixin of ``_Converter``: uses its ``major``, ``nodes``,
    ``_data_input`` and ``_op_name``."""

    def _activation(self, value, where: str, problems: list[str], elementwise: bool = True) -> Optional[str]:
        """Map a Keras activation (name or serialized function) to an IR name, or record a problem."""
        name = value
        if isinstance(value, dict):  # {"module": "keras.activations", "class_name": "function", "config": "relu"}
            module = str(value.get("module") or "")
            if value.get("class_name") == "function" and isinstance(value.get("config"), str) and (
                module.startswith(("keras", "tf_keras", "tensorflow")) or not module
            ):
                name = value["config"]
            else:
                problems.append(f"{where}: activation {value.get('class_name')!r} is not a built-in Keras activation")
                return None
        if not isinstance(name, str):
            problems.append(f"{where}: activation {value!r} is not supported")
            return None
        table = _KERAS3_ACTIVATIONS if self.major >= 3 else _KERAS2_ACTIVATIONS
        mapped = table.get(name)
        if mapped is None or (elementwise and mapped not in ir.ELEMENTWISE_ACTIVATIONS):
            kind = "an element-wise activation" if elementwise else "an activation"
            problems.append(f"{where}: activation {name!r} is not {kind} edgernn supports (Keras {self.major})")
            return None
        return mapped

    def _activation_layer(self, entry, call, k, where, problems, dry):
        cls, cfg = entry["class_name"], entry["config"]
        act = self._activation_from_layer(cls, cfg, where, problems)
        if dry or act is None:
            return None
        x = self._data_input(call, where, problems)
        if x is None:
            return None
        if cls == "Softmax" and (call.mask is not None or x.mask is not None):
            # keras.layers.Softmax uses the mask (masked entries get -1e9 before the softmax).
            problems.append(f"{where}: Softmax layer on a masked tensor is not supported")
            return None
        op = ir.Activation(name=self._op_name(cfg.get("name", entry.get("name")), k), activation=act)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, x.rank, x.features, x.timesteps, x.mask)]

    def _activation_from_layer(self, cls, cfg, where, problems) -> Optional[str]:
        """Activation layers: Activation(name) and the parameterised ReLU/LeakyReLU/ELU/Softmax,
        accepted only where their parameters equal an IR activation's definition."""
        if cls == "Activation":
            return self._activation(cfg.get("activation"), where, problems, elementwise=False)
        if cls == "ReLU":
            top, slope, threshold = cfg.get("max_value"), cfg.get("negative_slope", 0.0), cfg.get("threshold", 0.0)
            if slope == 0 and threshold == 0 and top is None:
                return "relu"
            if slope == 0 and threshold == 0 and top == 6:
                return "relu6"
            problems.append(f"{where}: ReLU with max_value={top}, negative_slope={slope}, threshold={threshold} is not supported")
            return None
        if cls == "LeakyReLU":
            slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
            if isinstance(slope, (int, float)) and math.isclose(slope, 0.2, rel_tol=1e-6):
                return "leaky_relu"  # the IR's leaky_relu is Keras 3's activation, slope 0.2
            problems.append(f"{where}: LeakyReLU slope {slope} is not supported (only 0.2)")
            return None
        if cls == "ELU":
            if cfg.get("alpha", 1.0) == 1.0:
                return "elu"
            problems.append(f"{where}: ELU alpha {cfg.get('alpha')} is not supported (only 1.0)")
            return None
        if cls == "Softmax":
            if cfg.get("axis", -1) in (-1, [-1]):
                return "softmax"
            problems.append(f"{where}: Softmax over axis {cfg.get('axis')} is not supported (only -1)")
            return None
        raise AssertionError(cls)  # pragma: no cover
