"""The input length a Flatten fixes, for importers whose source does not declare one (PyTorch's
modules, ONNX graphs with a dynamic time axis): verification runs the model at that length."""

from __future__ import annotations

from typing import Optional

from .. import ir


def fixed_length(nodes, longest: int = 1 << 16) -> Optional[int]:
    """The shortest input length the convolutions and poolings before the first ``ir.Flatten`` take
    to its ``steps`` (strides make several lengths fit; any of them runs); None without a Flatten."""
    ops = []
    for node in nodes:
        if isinstance(node.op, ir.Flatten):
            for steps in range(1, longest):
                length = steps
                for op in ops:
                    length = op.output_steps(length)
                if length == node.op.steps:
                    return steps
            return None
        if isinstance(node.op, (ir.Conv1D, ir.Pooling1D)) and not getattr(node.op, "global_pool", False):
            ops.append(node.op)
    return None
