"""PyTorch importer: ``nn.Module`` objects, ``.pt``/``.pth`` files (state_dict or TorchScript) and
``.safetensors`` state dicts -> :class:`~edgernn.ir.ModelSpec`.

torch is imported lazily, inside the functions that need it; ``.safetensors`` files are read with
the ``safetensors`` package's NumPy API and need no torch at all. No file is ever unpickled without
restriction: a state_dict is read with ``torch.load(..., weights_only=True)`` (tensors and plain
containers only, no Python object is built, no code runs), a TorchScript archive with
``torch.jit.load`` (only when the zip holds a ``code/`` folder).

How a module maps (the rules are the same for a live module, a TorchScript file and a state dict):

* A bare ``nn.LSTM``/``nn.GRU``/``nn.RNN``: one IR layer per PyTorch layer (``ir.Bidirectional``
  with ``merge_mode="concat"`` for ``bidirectional=True``, so layer ``k + 1`` reads both
  directions concatenated, as PyTorch does). ``predict`` returns PyTorch's ``output`` (the first
  element of the tuple) as ``(batch, T, features)`` whatever ``batch_first`` was. The final states
  ``h_n``/``c_n`` of a unidirectional module are the stream's state after a run:
  ``s = m.stream(B); s.run(x); s.get_state()["<name>_l<k>/h"]`` is ``h_n[k]`` (and ``/c`` is
  ``c_n[k]``), where ``<name>`` is ``lstm``, ``gru`` or ``rnn`` for a bare module and the module's
  path in a composed one.
* A composed module: its children (recursively through ``nn.Sequential``, ``nn.ModuleList`` and
  plain container modules) in the order forward() calls them where torch.fx or the TorchScript graph
  shows it simply (``calls``), else in registration order (the ``order`` option orders the top-level
  modules), each applied to the previous one's output:
  recurrent modules, ``nn.Linear`` (-> ``ir.Dense``, an activation module right after it fused
  into the Dense), ``nn.LayerNorm`` over the last axis (-> ``ir.LayerNorm``), ``nn.Embedding``
  first (-> ``ir.Embedding`` of integer codes), the convolutional front-end (``conv``), activation modules
  (-> ``ir.Activation``), ``nn.Dropout``/``nn.Identity``
  (skipped: the identity at inference). The module's ``forward`` is not visible, so how the last
  recurrent module's output reaches the head is an explicit option:

  - ``head="last"``: the head sees the output's last step, ``output[:, -1]`` (batch_first) or
    ``output[-1]``; ``predict`` returns ``(batch, outputs)``. Refused for a bidirectional last
    module (its backward half at the last step has read one step only; no IR layer computes it).
  - ``head="every"``: the head runs on every step; ``predict`` returns ``(batch, T, outputs)``.
  - ``head="final"``: the head sees the last layer's final hidden state, ``h_n[-1]``, or for a
    bidirectional module ``torch.cat([h_n[-2], h_n[-1]], dim=1)``; ``predict`` returns
    ``(batch, outputs)``.

  Where forward() has a graph (torch.fx for a live module, TorchScript), the head, the order and the
  permutes are read from it (``forward``) and ``head`` may be left out (given, it must agree). A
  composed module without a graph and without ``head`` is refused with an error naming the option. The input of a
  composed module is ``(batch, T, features)`` for ``predict`` too; run by PyTorch it is laid out
  as its first recurrent module's ``batch_first`` says.

State dicts carry weights only: their architecture is inferred from key names and shapes (see
``state_dict``). What a state dict cannot carry is given as keyword options named as PyTorch names
them: ``nonlinearity="tanh"|"relu"`` (or ``mode="RNN_TANH"|"RNN_RELU"``) for an ``nn.RNN``,
``batch_first`` (used when the rebuilt module is run), ``head``, ``activations={"<path>": "ReLU", ...}``
for parameterless modules (a gap in a Sequential's numbering, ``head.1``, or an activation after a
module, keyed by that module's path), ``modules={"norm": "LayerNorm", "embed": "Embedding"}`` for
modules whose parameters do not say what they are (a 1-D weight, a 2-D weight without bias) and
``order=["rnn", "fc"]`` when a safetensors file (which keeps no order) allows several.

Modules, one idea each:

* ``files``: ``.pt``/``.pth`` and ``.safetensors`` read: :func:`load_torch_file`, :func:`load_safetensors_file`.
* ``modules``: :func:`from_torch_module`, and the walk of a live or TorchScript module tree into a chain.
* ``forward``: forward() read from its torch.fx or TorchScript graph: the layers in order and the
  tensors each reads (branches; ``a + b``, ``torch.cat`` over the features and the other merges), the
  permutes between (N, C, T) and the recurrent part, the head (this replaces the ``head`` option
  wherever a graph exists; see docs/pytorch.md).
* ``conv``: Conv1d, MaxPool1d/AvgPool1d, the global adaptive poolings, BatchNorm1d, ConstantPad1d/
  ZeroPad1d, Upsample (nearest) and Flatten: read from a module, built into IR ops (what PyTorch and ONNX share is in
  ``importers._conv``; BatchNorm, activations and pads folded into the layer before or after them
  where exact by ``importers._fold``).
* ``calls``: the order forward() calls the layers, from a torch.fx trace or a TorchScript graph
  (used where ``forward`` cannot read the graph and ``head`` is given).
* ``state_dict``: a chain inferred from a state dict's parameter names and shapes.
* ``chain``: the chain every source is reduced to: ``_RNN``, ``_Linear``, ``_Act`` records in forward order.
* ``build``: the IR built from a chain: the heads, the checks (modules that do not chain: the order
  rule and the ``order`` option), the gate-order and bias reshuffles.
* ``activations``: PyTorch activation modules to IR names, and the modules skipped as the identity.
* ``options``: the keyword options, which exist and how each is read.
* ``run``: :func:`run_source`, the source run by PyTorch itself, for verification.

The one call that unpickles a file, ``torch.load`` restricted to weights, is
``files._load_weights_only``; tests/test_torch_import.py reads every module of the package to
check that it stays the only one.
"""

from __future__ import annotations

from .files import load_safetensors_file, load_torch_file
from .modules import from_torch_module
from .run import run_source

__all__ = ["from_torch_module", "load_torch_file", "load_safetensors_file", "run_source"]

