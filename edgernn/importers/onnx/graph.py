"""The graph walk's bookkeeping: the nodes the graph outputs need, the names an ``If`` branch reads
from the enclosing graph, the loops edgernn refuses, and IR names made of ONNX names."""

from __future__ import annotations

import re


# Control flow edgernn does not follow: loops over the time steps (or batch rows) an exporter left.
_LOOPS = {
    op: f"operator {op} is not supported (edgernn does not import loop bodies). tf2onnx writes Keras 3 GRU and "
        "SimpleRNN layers, Keras 2 SimpleRNN and GRU(reset_after=False) layers and Keras 3 TimeDistributed as "
        "loops; it makes LSTM/GRU nodes only of Keras LSTMs and Keras 2 (tf-keras) GRU(reset_after=True). "
        "Convert the .keras/.h5 file itself with edgernn, or export from tf-keras or PyTorch"
    for op in ("Loop", "Scan")
}


def _outer_names(node) -> list:
    """Names a node's subgraphs (If branches) read from the enclosing graph."""
    names = []
    for a in node.attribute:
        graphs = ([a.g] if a.HasField("g") else []) + list(a.graphs)
        for g in graphs:
            made = {i.name for i in g.initializer} | {i.name for i in g.input}
            for n in g.node:
                names.extend(x for x in list(n.input) + _outer_names(n) if x and x not in made)
                made.update(n.output)
    return names


def _needed_nodes(graph) -> set:
    """Indices of the nodes the graph outputs depend on (protobuf hands out new wrappers: no ids)."""
    nodes = list(graph.node)
    producers = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if name:
                producers[name] = index
    needed, todo = set(), [o.name for o in graph.output]
    while todo:
        index = producers.get(todo.pop())
        if index is None or index in needed:
            continue
        needed.add(index)
        if nodes[index].op_type in _LOOPS:
            continue  # refused as a whole: what only feeds it (its trip count, condition) is not read
        todo.extend(n for n in nodes[index].input if n)
        todo.extend(_outer_names(nodes[index]))
    return needed


def _clean_name(name: str) -> str:
    name = name.strip("/").replace("/", ".")
    return re.sub(r"[^\w.:-]", "_", name) or "node"
