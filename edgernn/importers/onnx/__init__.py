"""ONNX importer: ``.onnx`` files with LSTM, GRU and RNN nodes -> :class:`~edgernn.ir.ModelSpec`.

The conversion lives in :mod:`.converter`; this package re-exports its entry points.
"""

from __future__ import annotations

from .converter import (  # noqa: F401 - re-exported
    _as_layout_0,
    io_layout,
    load_onnx_file,
    run_source,
    source_runtime,
    to_edgernn_output,
    to_onnx_input,
)

__all__ = ["load_onnx_file", "run_source"]
