"""Which exporter wrote a file, where that changes what a refusal should say.

PyTorch's ``torch.onnx.export`` has two exporters. The TorchScript one (``dynamo=False``) writes
``nn.LSTM``/``nn.GRU``/``nn.RNN`` as LSTM/GRU/RNN nodes. The dynamo one (the default since torch
2.9) writes LSTM and GRU nodes too, with shape arithmetic around them that edgernn follows, but
``nn.RNN`` as its recurrence unrolled into one ``MatMul``/``Add``/``Tanh`` per timestep, which no
RNN layer can be read back from. Its files are recognised by ``producer_name == "pytorch"`` and
either the ``pkg.torch.onnx.*`` metadata it puts on every node (the module path and class each
node comes from) or, where that was stripped, its node names (``node_<Op>_<n>``; the TorchScript
exporter writes ``/<module path>/<Op>``).
"""

from __future__ import annotations

import ast

_RNN_CLASS = "torch.nn.modules.rnn.RNN"


def _metadata(node) -> dict:
    return {p.key: p.value for p in getattr(node, "metadata_props", ())}


def is_torch_dynamo(model) -> bool:
    """Whether ``model`` (a ModelProto) was written by PyTorch's dynamo exporter."""
    if model.producer_name != "pytorch":
        return False
    nodes = list(model.graph.node)
    if any(key.startswith("pkg.torch.onnx.") for node in nodes for key in _metadata(node)):
        return True
    names = [node.name for node in nodes if node.name]
    return bool(names) and all(name.startswith("node_") for name in names)


def _list(text: str) -> list:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return value if isinstance(value, list) else []


def unrolled_rnn_modules(model) -> list[str]:
    """Paths of the ``nn.RNN`` modules whose recurrence the dynamo exporter unrolled (read from its
    node metadata: the class and name scope of each node), in graph order."""
    if any(node.op_type == "RNN" for node in model.graph.node):
        return []
    paths: list[str] = []
    for node in model.graph.node:
        meta = _metadata(node)
        classes = _list(meta.get("pkg.torch.onnx.class_hierarchy", ""))
        scopes = _list(meta.get("pkg.torch.onnx.name_scopes", ""))
        if _RNN_CLASS in classes:
            index = classes.index(_RNN_CLASS)
            path = ".".join(str(s) for s in scopes[1:index + 1] if s) or "the module"
            if path not in paths:
                paths.append(path)
    return paths


def dynamo_note(model) -> str | None:
    """What a refusal of a dynamo-exported file adds: the exporter, and ``dynamo=False``."""
    if not is_torch_dynamo(model):
        return None
    rnns = unrolled_rnn_modules(model)
    what = "This file looks like the output of PyTorch's dynamo exporter (torch.onnx.export's default since torch 2.9)"
    if rnns:
        names = ("module " if len(rnns) == 1 else "modules ") + ", ".join(repr(p) for p in rnns)
        what += (f", which writes nn.RNN ({names}) as its recurrence unrolled into MatMul/Add/Tanh nodes per "
                 "timestep, not an RNN node")
    return (f"{what}; torch.onnx.export(..., dynamo=False) writes LSTM/GRU/RNN nodes, a graph edgernn converts")
