"""Reading an ``.onnx`` file: the ModelProto, loaded with the ``onnx`` package (imported lazily;
nothing in the file is executed), and a node's attributes as Python values."""

from __future__ import annotations

from pathlib import Path

from ...errors import InvalidModelFile, UnsupportedModel


def _read(path: Path):
    try:
        import onnx
    except ImportError as exc:
        raise UnsupportedModel(f"{path.name}: reading .onnx files needs the onnx package "
                               "(pip install edgernn[onnx])") from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - DecodeError, missing external data
        raise InvalidModelFile(f"{path.name}: not a readable ONNX model: {exc}") from exc
    if not len(model.graph.node) and not len(model.graph.output):
        raise InvalidModelFile(f"{path.name}: not an ONNX model (empty graph)")
    return model


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out
