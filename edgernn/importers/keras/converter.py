"""The config walk: ``_Converter`` reads a model config (Sequential or functional), makes the IR
inputs, resolves the layer calls in dependency order and hands each to its layer family's handler,
gathering every problem before it raises.

The core here gives the handlers what every layer needs: the common checks (custom objects, dtype
policy, one data input), the weights of a layer (``_fetch``, ``_shape``), unique op names. The
handlers are mixins, one module per layer family (see the package docstring for why), and
``_HANDLERS`` at the end maps each Keras class name to its handler.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import dataclasses

from ... import ir
from ...graph import min_steps
from ...store import MAX_DIMENSION
from ...verify import RANDOM_STEPS
from ...errors import InvalidModelFile, UnsupportedModel
from .._refusals import points_to
from .activations import _ActivationHandlers
from .conv import _ConvHandlers
from .graph import _UNKNOWN, _Call, _Data, _MaskColumns, _MaskExpr, _parse_node, _refs, _Unusable
from .layers import _IDENTITY_LAYERS, _LayerHandlers
from .masking import _MaskHandlers
from .merge import _MERGE_LAYERS, _MergeHandlers
from .normalization import _NormalizationHandlers
from .reshape import _ReshapeHandlers
from .recurrent import _RNN_LAYERS, _RecurrentHandlers

_MODEL_CLASSES = {"Sequential", "Functional", "Model"}
# dtype policies whose variables are float32/float64 (mixed policies keep float32 variables).
_FLOAT_POLICIES = {"float32", "float64", "mixed_float16", "mixed_bfloat16"}


class _Converter(_ActivationHandlers, _ConvHandlers, _LayerHandlers, _MaskHandlers, _MergeHandlers,
                 _NormalizationHandlers, _RecurrentHandlers, _ReshapeHandlers):
    """Walks a Keras model config, building IR nodes and gathering every problem before raising."""

    def __init__(self, label: str, config, weights, major: int):
        self.label, self.config, self.weights, self.major = label, config, weights, major
        self.unsupported: list[str] = []
        self.invalid: list[str] = []
        self.nodes: list[ir.Node] = []
        self.inputs: list[ir.Input] = []
        self.weight_keys: dict[str, str] = {}
        self.maskings: dict[tuple[str, float], tuple[str, str]] = {}
        self.code_masks: dict[str, str] = {}  # int input -> the mask of an Embedding(mask_zero) reading it
        self.any_length: set[str] = set()  # (batch, None) inputs: codes of any length, if an Embedding reads them
        self.used_op_names: set[str] = set()

    # -- driver ----------------------------------------------------------------------------

    @points_to("docs/keras.md")
    def convert(self, source: dict) -> ir.ModelSpec:
        config = self.config
        if not isinstance(config, dict) or "class_name" not in config:
            raise InvalidModelFile(f"{self.label}: the model config has no class_name")
        kind = config["class_name"]
        body = config.get("config")
        if kind == "Sequential":
            outputs = self._sequential(body)
        elif kind in ("Functional", "Model") and isinstance(body, dict) and "layers" in body:
            outputs = self._functional(body)
        else:
            raise UnsupportedModel(
                f"{self.label}: model class {kind!r} is not supported (only Sequential and functional models; "
                "subclassed models have no graph in their config)"
            )
        names = []
        for value in outputs:
            names.append(self._use(value, "model output"))
        for i in self.inputs:
            if i.name in self.any_length and i.dtype != "int":
                self.unsupported.append(f"input {i.name!r}: the number of features must be fixed, got None (a "
                                        "(batch, None) input is one of integer codes of any length for an Embedding)")
        if self.invalid:
            raise InvalidModelFile(f"{self.label}: inconsistent weights or config", self.invalid)
        if self.unsupported:
            raise UnsupportedModel(f"{self.label}: cannot convert this model", self.unsupported)
        try:
            return _fewest_codes(ir.ModelSpec(tuple(self._any_length_inputs()), tuple(self.nodes), tuple(names),
                                              source), self.any_length)
        except InvalidModelFile as exc:
            raise InvalidModelFile(f"{self.label}: {exc}") from exc

    def _use(self, value, what: str) -> Optional[str]:
        """The IR name of a data tensor used as ``what``; records a problem for anything else."""
        if isinstance(value, _Data):
            return value.name
        if isinstance(value, _Unusable):
            if value.why:
                self.unsupported.append(f"{value.why} (used as {what})")
        elif isinstance(value, (_MaskExpr, _MaskColumns)):
            self.unsupported.append(f"a mask computed by keras.ops is used as {what}")
        else:
            self.unsupported.append(f"a constant is used as {what}")
        return None

    def _sequential(self, body) -> list:
        """A Sequential config: each layer reads the previous layer's output."""
        if isinstance(body, list):  # Keras <= 2.2 wrote the layer list as the whole config
            body = {"layers": body}
        if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
            raise InvalidModelFile(f"{self.label}: the Sequential config has no layer list")
        entries = body["layers"]
        for entry in entries:
            self._check_entry(entry)
        layers = [e for e in entries if isinstance(e, dict) and e.get("class_name") != "InputLayer"]
        self._assign_weight_keys(layers)
        # The input shape: an InputLayer, the first layer's batch_input_shape (Keras 2 without
        # InputLayer), the Sequential's build_input_shape, or the first layer's build_config.
        shape, name = None, "input"
        first = entries[0] if entries else None
        if isinstance(first, dict) and first.get("class_name") == "InputLayer":
            shape = _input_shape(first.get("config", {}))
            name = first.get("config", {}).get("name", name)
        elif layers:
            cfg = layers[0].get("config", {})
            shape = _input_shape(cfg) or body.get("build_input_shape")
            shape = shape or (layers[0].get("build_config") or {}).get("input_shape")
        current = self._make_input(name, shape)
        outputs = [current if current is not None else _UNKNOWN]
        for entry in layers:
            if len(outputs) > 1:
                self.unsupported.append(
                    f"layer {entry.get('config', {}).get('name')!r}: reads a layer that returns several tensors"
                )
                outputs = [_UNKNOWN]
            outputs = self._apply(entry, _Call([outputs[0]], []), 0) or [_UNKNOWN]
        return outputs

    def _functional(self, body) -> list:
        """A functional config: layers with inbound nodes, resolved in dependency order."""
        entries = body.get("layers")
        if not isinstance(entries, list):
            raise InvalidModelFile(f"{self.label}: the functional config has no layer list")
        by_name = {}
        for entry in entries:
            self._check_entry(entry)
            by_name[entry.get("name") or entry["config"].get("name")] = entry
        self._assign_weight_keys([e for e in entries if e.get("class_name") != "InputLayer"])
        values: dict[tuple[str, int, int], Any] = {}
        refused: set[tuple[str, int]] = set()  # (layer, node) calls refused: all their outputs unknown
        for ref in _refs(body.get("input_layers")):
            entry = by_name.get(ref[0])
            if entry is None or entry.get("class_name") != "InputLayer":
                raise InvalidModelFile(f"{self.label}: model input {ref[0]!r} is not an InputLayer of the config")
            value = self._make_input(ref[0], _input_shape(entry.get("config", {})))
            values[(ref[0], 0, 0)] = value if value is not None else _UNKNOWN
        pending = []
        for entry in entries:
            if entry.get("class_name") == "InputLayer":
                continue
            nodes = entry.get("inbound_nodes") or []
            if not isinstance(nodes, list):
                raise InvalidModelFile(f"{self.label}: layer {entry.get('name')!r} has malformed inbound_nodes")
            for k, node in enumerate(nodes):
                pending.append((entry, k, _parse_node(node, self.label, entry.get("name"))))
        # Resolve in dependency order (a layer called twice has nodes at different depths).
        while pending:
            ready = [p for p in pending if all(r in values or r[:2] in refused for r in p[2].refs())]
            if not ready:
                names = sorted({p[0].get("name") for p in pending})
                raise InvalidModelFile(f"{self.label}: layers {names} read tensors no layer makes")
            done = {id(p) for p in ready}
            pending = [p for p in pending if id(p) not in done]
            for entry, k, node in ready:
                outs = self._apply(entry, node.resolve(values, refused), k)
                if outs is None:
                    refused.add((entry.get("name"), k))
                for i, value in enumerate(outs or []):
                    values[(entry.get("name"), k, i)] = value
        outputs = []
        for ref in _refs(body.get("output_layers")):
            if ref[:2] in refused:
                outputs.append(_UNKNOWN)
            elif ref not in values:
                raise InvalidModelFile(f"{self.label}: model output {ref} is never made")
            else:
                outputs.append(values[ref])
        return outputs

    # -- checks common to all layers -------------------------------------------------------

    def _check_entry(self, entry):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise InvalidModelFile(f"{self.label}: a layer entry of the config is malformed")
        if not isinstance(entry.get("config"), dict):
            raise InvalidModelFile(f"{self.label}: layer entry {entry.get('class_name')!r} has no config")

    def _where(self, entry) -> str:
        return f"layer {entry['config'].get('name', entry.get('name'))!r} ({entry['class_name']})"

    def _custom(self, entry) -> Optional[str]:
        """Why ``entry`` is not a built-in Keras layer, or None. Built-ins live in keras.* modules
        (tf_keras/tensorflow for Keras 2) and have no registered_name other than their class."""
        module = entry.get("module")
        registered = entry.get("registered_name")
        if module is not None and not str(module).split(".")[0] in ("keras", "tf_keras", "tensorflow"):
            return f"a custom object from module {module!r}"
        if registered not in (None, entry["class_name"]):
            return f"a custom object registered as {registered!r}"
        return None

    def _dtype_problem(self, cfg) -> Optional[str]:
        dtype = cfg.get("dtype")
        if isinstance(dtype, dict):
            if "Quantized" in str(dtype.get("class_name", "")):
                return "quantized dtype policy"
            dtype = (dtype.get("config") or {}).get("name")
        if dtype is None or dtype in _FLOAT_POLICIES:
            return None
        return f"dtype policy {dtype!r} (only float32 variables are supported)"

    # -- weights -----------------------------------------------------------------------------

    def _assign_weight_keys(self, layers):
        """``.keras`` paths: snake_case(class name), suffixed _1, _2, ... per class in model.layers
        order (keras/src/saving/saving_lib.py: _save_container_state / _get_unique_name)."""
        used: dict[str, int] = {}
        for entry in layers:
            module = str(entry.get("module") or "")
            if ".ops." in module:  # keras.ops nodes of a functional graph are not in model.layers
                continue
            base = _snake_case(entry["class_name"])
            if base in used:
                used[base] += 1
                key = f"{base}_{used[base]}"
            else:
                used[base] = 0
                key = base
            self.weight_keys[entry["config"].get("name", entry.get("name"))] = key

    def _fetch(self, layer: str, part: tuple[str, ...], roles: list[str], where: str) -> Optional[dict]:
        """Weights of ``layer`` (``part`` a sub-path: ("cell",), ("forward_layer", "cell"), ...) as
        a dict role -> array for ``roles`` in Keras's creation order (kernel, recurrent_kernel, bias).

        Names decide where the file has them (legacy .h5: ``.../kernel:0``); the saved order
        decides where it does not (.keras: ``vars/0, 1, 2``). Problems go to ``self.invalid``.
        """
        items = self.weights.fetch(layer, self.weight_keys.get(layer, _snake_case(layer)), part)
        if items is None:
            if not roles:
                return {}
            self.invalid.append(f"{where}: its weights are missing from the file")
            return None
        by_name = {}
        for name, array in items:
            role = name.split("/")[-1].split(":")[0]
            by_name.setdefault(role, array)
        if set(roles) <= set(by_name) and len(by_name) == len(items):
            found = {role: by_name[role] for role in roles}
        elif len(items) != len(roles):
            self.invalid.append(f"{where}: the file holds {len(items)} weight arrays, expected {len(roles)} ({', '.join(roles)})")
            return None
        else:
            found = {role: array for role, (_, array) in zip(roles, items)}
        # Weights are floats; the reader also passes integer arrays for Normalization's count (unused).
        for role, array in found.items():
            if role != "count" and array.dtype.kind != "f":
                self.invalid.append(f"{where}: {role} holds {array.dtype} values, expected floats")
                return None
        return found

    def _shape(self, where: str, what: str, array, shape: tuple) -> bool:
        if array.shape != tuple(shape):
            self.invalid.append(f"{where}: {what} has shape {array.shape}, expected {tuple(shape)}")
            return False
        return True

    # -- naming ------------------------------------------------------------------------------

    def _op_name(self, layer: str, k: int) -> str:
        """IR op name: the Keras layer name; a layer called again gets ``name#k``."""
        name = layer if k == 0 else f"{layer}#{k}"
        while name in self.used_op_names:
            name += "_"
        self.used_op_names.add(name)
        return name

    # -- inputs ------------------------------------------------------------------------------

    def _make_input(self, name: str, shape) -> Optional[_Data]:
        """An ir.Input from a Keras batch shape ``[batch, T, F]`` or ``[batch, F]`` (batch ignored:
        a stateful model's fixed batch size is not kept, the converted model takes any)."""
        if not isinstance(shape, (list, tuple)) or len(shape) not in (2, 3):
            self.unsupported.append(
                f"input {name!r}: shape {shape} is not (batch, timesteps, features) or (batch, features)"
            )
            return None
        features = shape[-1]
        if len(shape) == 2 and features is None:  # Input(shape=(None,), dtype="int32"): codes of any length
            self.any_length.add(name)
            self.inputs.append(ir.Input(name=name, features=1, rank=2))  # features set in convert
            return _Data(name, 2, 1, None)
        if not isinstance(features, int) or features < 1:
            codes = " (integer codes for an Embedding need a fixed length here)" if len(shape) == 2 else ""
            self.unsupported.append(f"input {name!r}: the number of features must be fixed, got {features}{codes}")
            return None
        rank = len(shape)
        timesteps = shape[1] if rank == 3 and isinstance(shape[1], int) else None
        self.inputs.append(ir.Input(name=name, features=features, rank=rank, timesteps=timesteps))
        return _Data(name, rank, features, timesteps)

    def _any_length_inputs(self) -> list[ir.Input]:
        """The inputs, each one of codes of any length at the longest length the store takes (every
        layer fits it), for the validation that :func:`_fewest_codes` then reruns at the fewest."""
        return [dataclasses.replace(i, features=MAX_DIMENSION) if i.name in self.any_length else i for i in self.inputs]

    # -- layers ------------------------------------------------------------------------------

    def _apply(self, entry, call: _Call, k: int) -> Optional[list]:
        """Convert one call of one layer; returns the values of its outputs in Keras order, or
        None when the layer is refused (its problems recorded; what reads it is checked dry)."""
        cls, cfg = entry["class_name"], entry["config"]
        where = self._where(entry)
        problems: list[str] = []
        custom = self._custom(entry)
        if custom:
            self.unsupported.append(f"{where}: {custom}")
            return None
        if cls == "Lambda":
            self.unsupported.append(f"{where}: Lambda layers hold Python code, which edgernn never runs")
            return None
        handler = _HANDLERS.get(cls)
        if handler is None:
            if cls in _MODEL_CLASSES:
                what = "nested models are"
            elif ".ops." in str(entry.get("module") or ""):
                what = f"keras.ops.{_snake_case(cls)} in a functional graph is"
            else:
                what = f"{cls} layers are"
            self.unsupported.append(f"{where}: {what} not supported")
            return None
        dtype_problem = None if cls in ("ZerosLike", "OnesLike") else self._dtype_problem(cfg)  # their output's
        if dtype_problem:
            problems.append(f"{where}: {dtype_problem}")
        # Values of refused upstream layers propagate silently (already reported); the layer's
        # own config is still checked so that one error lists every problem.
        if any(v is _UNKNOWN for v in call.inputs + call.initial_state + [call.mask]):
            try:
                handler(self, entry, call, k, where, problems, dry=True)
            except InvalidModelFile as exc:
                self.invalid.append(f"{where}: {exc}")
            self.unsupported.extend(problems)
            return None
        try:
            outs = handler(self, entry, call, k, where, problems, dry=False)
        except InvalidModelFile as exc:  # an IR op refused its weights (NaN, shapes): name the layer
            self.invalid.append(f"{where}: {exc}")
            return None
        self.unsupported.extend(problems)
        return None if problems else outs

    def _data_input(self, call: _Call, where: str, problems: list[str], ranks=(2, 3)) -> Optional[_Data]:
        """The single data input of a call, checked; None (problem recorded) otherwise."""
        if len(call.inputs) != 1:
            problems.append(f"{where}: takes {len(call.inputs)} inputs; only single-input layers are supported")
            return None
        x = call.inputs[0]
        if not isinstance(x, _Data):
            self._use(x, f"input of {where}")
            return None
        if x.rank not in ranks:
            problems.append(f"{where}: input of rank {x.rank} is not supported here (expected {' or '.join(map(str, ranks))})")
            return None
        return x


# Handlers: (self, entry, call, k, where, problems, dry) -> outputs or None. With dry=True
# (an upstream layer was refused) they only check the config and build nothing.
_HANDLERS = {
    **{cls: _Converter._identity for cls in _IDENTITY_LAYERS},
    **{cls: _Converter._activation_layer for cls in ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")},
    **{cls: _Converter._recurrent for cls in (*_RNN_LAYERS, "RNN")},
    "Dense": _Converter._dense,
    "Embedding": _Converter._embedding,
    "TimeDistributed": _Converter._time_distributed,
    "Masking": _Converter._masking,
    "RepeatVector": _Converter._repeat_vector,
    "Bidirectional": _Converter._bidirectional,
    "NotEqual": _Converter._not_equal,
    "Any": _Converter._any,
    "LogicalOr": _Converter._logical_or,
    "ExpandDims": _Converter._expand_dims,
    "ZerosLike": _Converter._mask_fill,
    "OnesLike": _Converter._mask_fill,
    "Conv1D": _Converter._conv1d,
    "DepthwiseConv1D": _Converter._depthwise_conv1d,
    "SeparableConv1D": _Converter._depthwise_conv1d,
    "SeparableConvolution1D": _Converter._depthwise_conv1d,
    **{cls: _Converter._pooling1d for cls in ("MaxPooling1D", "AveragePooling1D", "GlobalMaxPooling1D",
                                              "GlobalAveragePooling1D", "MaxPool1D", "AvgPool1D",
                                              "GlobalMaxPool1D", "GlobalAvgPool1D")},
    "BatchNormalization": _Converter._batch_normalization,
    "Flatten": _Converter._flatten,
    **{cls: _Converter._merge for cls in _MERGE_LAYERS},
    "Concatenate": _Converter._concatenate,
    "LayerNormalization": _Converter._layer_normalization,
    "RMSNormalization": _Converter._layer_normalization,
    "Normalization": _Converter._normalization,
    "Rescaling": _Converter._rescaling,
    "ZeroPadding1D": _Converter._pad1d,
    "Cropping1D": _Converter._pad1d,
    "UpSampling1D": _Converter._upsampling1d,
    "Reshape": _Converter._reshape,
    "Permute": _Converter._permute,
}


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case, which names the weight groups of a .keras file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _input_shape(cfg: dict):
    """Batch shape of an InputLayer config: Keras 3 "batch_shape", Keras 2 "batch_input_shape"."""
    for key in ("batch_shape", "batch_input_shape"):
        if cfg.get(key) is not None:
            return cfg[key]
    if cfg.get("shape") is not None:  # some Keras 3 releases wrote shape without the batch axis
        return [None, *cfg["shape"]]
    return None


def _fewest_codes(spec: ir.ModelSpec, any_length: set) -> ir.ModelSpec:
    """``spec`` with each integer input of any length (``Input(shape=(None,))``) given as its
    ``features`` (the T that validation, verification's random codes and ``warmup`` use) the length
    verification takes for a sequence of any length, or the fewest timesteps its layers fit if
    more; ``predict`` and streams take codes of any length the layers fit, as for a fixed T."""
    if not any_length:
        return spec
    inputs = tuple(dataclasses.replace(i, features=max(RANDOM_STEPS, min_steps(spec, i.name)))
                   if i.name in any_length else i for i in spec.inputs)
    return spec.replace(inputs=inputs)
