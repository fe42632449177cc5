"""The order in which forward() calls a module's layers, where PyTorch has a graph of it.

edgernn cannot see ``forward()`` and takes a module's children in the order they are registered in
``__init__``. Where a graph of the calls exists and is simple, the order of the calls is used
instead, so a head declared before its LSTM converts:

* a live ``nn.Module``: ``torch.fx.symbolic_trace`` (forward run on proxies, no data; the modules of
  ``torch.nn`` stay leaves, containers and plain modules are traced through);
* a TorchScript module (scripted or traced, live or loaded from a file): its graph, read without
  running it: every ``prim::CallMethod`` on a submodule in graph order, a call of another method or
  of a container followed into that method's graph.

"Simple" means: every layer edgernn read from the module tree is called exactly once, outside any
``if``/loop block. Anything else (forward cannot be traced, a layer called twice or never, calls
inside control flow) gives None, and the registration order stands.
"""

from __future__ import annotations

import warnings
from typing import Optional

_MAX_DEPTH = 32  # nested method calls followed in a TorchScript graph


class _NotSimple(Exception):
    pass


def call_order(module, leaf) -> Optional[list[str]]:
    """Paths of the modules ``leaf(module)`` says are layers, in the order forward() calls them
    (paths as ``named_modules`` gives them), or None where no simple graph of the calls exists."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(module, torch.jit.ScriptModule):
                calls: list[str] = []
                _script_calls(module, "", "forward", leaf, calls, 0)
                return calls
            return _fx_calls(module, leaf)
    except Exception:  # noqa: BLE001 - any failure to trace or read the graph: no call order
        return None


def _fx_calls(module, leaf) -> list[str]:
    import torch.fx

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualified_name):
            return leaf(m) or super().is_leaf_module(m, qualified_name)

    graph = _Tracer().trace(module)
    return [str(node.target) for node in graph.nodes if node.op == "call_module"]


def _script_calls(module, path: str, method: str, leaf, calls: list, depth: int) -> None:
    """Append to ``calls`` the layers ``method`` of ``module`` (at ``path``) calls, in graph order."""
    import torch

    if depth > _MAX_DEPTH:
        raise _NotSimple("calls nested too deep")
    graph = module.graph if method == "forward" else getattr(module, method).graph
    inputs = list(graph.inputs())
    owners = {inputs[0].debugName(): (path, module)}  # value name -> (path, submodule)
    for node in graph.nodes():
        kind = node.kind()
        if kind == "prim::GetAttr":
            owner = owners.get(node.input().debugName())
            if owner is not None:
                name = node.s("name")
                child = getattr(owner[1], name, None)
                if isinstance(child, torch.nn.Module):
                    owners[node.output().debugName()] = (f"{owner[0]}.{name}" if owner[0] else name, child)
        elif kind == "prim::CallMethod":
            owner = owners.get(next(node.inputs()).debugName())
            if owner is None:
                continue
            child_path, child = owner
            if leaf(child):
                calls.append(child_path)
            else:
                _script_calls(child, child_path, node.s("name"), leaf, calls, depth + 1)
        elif any(_calls_inside(block) for block in node.blocks()):
            raise _NotSimple(f"a module is called inside {kind}")


def _calls_inside(block) -> bool:
    return any(node.kind() == "prim::CallMethod" or any(_calls_inside(inner) for inner in node.blocks())
               for node in block.nodes())
