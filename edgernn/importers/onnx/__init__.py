"""ONNX importer: ``.onnx`` files with LSTM, GRU and RNN nodes -> :class:`~edgernn.ir.ModelSpec`.

The file is read with the ``onnx`` package (``onnx.load`` and ``numpy_helper``), imported lazily;
nothing in it is executed. The graph is interpreted symbolically: every tensor is either a constant
(initializers, ``Constant`` nodes, shape arithmetic), a shape vector (``Shape`` of a data tensor),
a filled tensor (``ConstantOfShape``: the zero initial states exporters build), or a *data* tensor:
one canonical edgernn tensor -- ``(batch, T, features)`` or ``(batch, features)`` -- seen through
a layout that says which ONNX axis is the batch, the time, a unit axis, or a block of the features.
Layout ops (``Transpose``, ``Squeeze``/``Unsqueeze``, ``Reshape`` that merges feature blocks, or
batch and time around a per-step ``MatMul`` as tf2onnx writes a Dense on a sequence -- targets
given by ``Shape``/``Gather`` or as numbers matched to the declared static sizes --
``Gather``/``Slice`` of the last step, ``Identity``, ``Dropout``) only change the layout; the
recurrent nodes, ``Gemm``, ``MatMul`` (+ ``Add``), ``LayerNormalization`` and activations make IR
layers, and ``Add``/``Sub``/``Mul``/``Max``/``Min`` of computed tensors (``ir.Merge``) and their
``Concat`` over the features (``ir.Concatenate``) join branches: a model of several inputs and a graph. So the model
edgernn builds takes and returns edgernn's layouts, batch first, whatever ``layout`` attribute or
``Transpose`` the graph used:

* a graph input that feeds a recurrent node's ``X`` becomes an input ``(batch, T, features)``;
  one that feeds ``initial_h``/``initial_c`` (ONNX ``(num_directions=1, batch, hidden)``) an input
  ``(batch, hidden)`` that becomes the node's initial state;
* a graph output becomes an output ``(batch, T, features)`` or ``(batch, features)``; ONNX's
  direction and hidden axes merge direction-major (``Y`` of a bidirectional node, ``(T, 2, batch,
  H)``, is ``(batch, T, 2H)``: forward then backward, as PyTorch and Keras concatenate them). A
  bidirectional node's ``Y_c`` (or ``Y_h`` when it has initial states) is two edgernn outputs,
  forward then backward, ``(batch, H)`` each.

The recurrent nodes' operator mapping (gate orders, weights, biases, activations, directions,
initial states) is described in :mod:`.recurrent`, next to the code.

Anything else -- any other op (``Loop``/``Scan`` named with the routes that work), a layout op
edgernn cannot follow (splitting the batch, slicing the time axis other than its last step) -- is
refused, all problems in one :class:`~edgernn.errors.UnsupportedModel`.

:func:`run_source` (conversion verification) runs the file with onnxruntime, or with onnx's
reference evaluator where onnxruntime refuses it (see :mod:`.run`).

Modules, in the order a conversion uses them:

* :mod:`.container` -- reading the file: the ModelProto, a node's attributes.
* :mod:`.graph` -- the graph walk: the nodes the outputs need, loops refused, IR names.
* :mod:`.values` -- what an ONNX tensor is symbolically: constant, shape, fill, data, stack.
* :mod:`.expressions` -- the canonical edgernn tensors that data tensors view.
* :mod:`.roles` -- axis roles: batch, time, unit, feature block; graph-input axes bound.
* :mod:`.constants` -- Constant, Shape, ConstantOfShape, Equal, If, Expand; constant folding and
  the Mul/Add of sizes read with Shape.
* :mod:`.axes` -- Identity, Dropout, Cast, Transpose, Squeeze, Unsqueeze: axes moved only.
* :mod:`.select` -- Gather, Slice, Concat: the last step, a direction, a stack of states (a Concat
  over the features goes to :mod:`.merge`).
* :mod:`.reshape` -- Reshape and Flatten as layout changes.
* :mod:`.dense` -- Gemm, MatMul (+ Add): Dense layers; LayerNormalization.
* :mod:`.merge` -- Add, Sub, Mul, Max, Min, Div (the average) of computed tensors, Concat over the
  features: branches merged.
* :mod:`.conv` -- Conv, MaxPool/AveragePool, the global poolings, BatchNormalization: the 1-D
  convolutional front-end on (batch, channels, T) tensors.
* :mod:`.activations` -- activation ops and the recurrent nodes' activation functions.
* :mod:`.recurrent` -- LSTM, GRU, RNN nodes: gate orders, weight reshuffles, states, outputs.
* :mod:`.emit` -- the expressions the outputs need, emitted as IR nodes.
* :mod:`.producers` -- which exporter wrote the file, where a refusal should say so (PyTorch's
  dynamo exporter, which unrolls ``nn.RNN``: ``dynamo=False`` writes an RNN node).
* :mod:`.converter` -- one conversion, node by node, problems gathered; :func:`load_onnx_file`,
  :func:`io_layout`. A refusal ends with where docs/onnx.md says what converts.
* :mod:`.run` -- :func:`run_source`: the file run by onnxruntime (or onnx's reference evaluator).
"""

from __future__ import annotations

from .converter import io_layout, load_onnx_file  # noqa: F401 - re-exported
from .run import _as_layout_0, run_source, source_runtime, to_edgernn_output, to_onnx_input  # noqa: F401

__all__ = ["load_onnx_file", "run_source"]
