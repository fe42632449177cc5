"""The description every source is reduced to: a chain of layers in forward order.

A live module, a TorchScript module (``modules``) and a state dict (``state_dict``) each become a
``_Chain`` of ``_RNN`` (a whole ``nn.LSTM``/``nn.GRU``/``nn.RNN``, its parameters as PyTorch names
and stores them), ``_Linear``, ``_LayerNorm``, ``_Embedding`` and ``_Act`` records (and the
convolutional front-end's, :mod:`.conv`); ``build`` turns a chain into the IR and ``run``
runs it with PyTorch's own modules. A chain read from forward()'s graph may branch: it says which
tensors each layer reads (``_Chain.reads``), and ``_Merge`` records join them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...errors import UnsupportedModel


@dataclass
class _RNN:
    path: str
    mode: str  # LSTM, GRU, RNN_TANH, RNN_RELU
    params: dict  # PyTorch parameter name (weight_ih_l0, ...) -> numpy array
    num_layers: int
    bidirectional: bool
    bias: bool
    proj_size: int
    hidden_size: int
    input_size: int
    batch_first: bool = False

    @property
    def output_size(self) -> int:
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)


@dataclass
class _Linear:
    path: str
    weight: np.ndarray  # (out, in), as PyTorch stores it
    bias: Optional[np.ndarray]

    @property
    def input_size(self):
        return int(self.weight.shape[1])

    @property
    def output_size(self):
        return int(self.weight.shape[0])


@dataclass
class _LayerNorm:
    """``nn.LayerNorm`` over the last axis (``normalized_shape`` one int, F):
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per row, as the IR's LayerNorm ``layer``;
    ``weight``, ``bias`` (F,) or None (``elementwise_affine=False``, ``bias=False``)."""

    path: str
    input_size: int
    eps: float
    weight: Optional[np.ndarray]
    bias: Optional[np.ndarray]

    @property
    def output_size(self) -> int:
        return self.input_size


@dataclass
class _Embedding:
    """``nn.Embedding``: integer codes ``(N, T)`` (or ``(T, N)``) -> vectors, ``weight (vocab, dim)``
    as the IR's ``embeddings``. ``padding_idx`` only keeps that row's gradient zero in training: its
    row is looked up as it is. Only as the first layer (it reads the model's input)."""

    path: str
    weight: np.ndarray

    input_size = None  # codes, not features: nothing before it chains into it

    @property
    def output_size(self) -> int:
        return int(self.weight.shape[1])


@dataclass
class _Act:
    path: str
    activation: str  # IR name
    dim: Optional[int] = None  # Softmax/LogSoftmax: the axis, checked against the rank where it acts


@dataclass
class _Scale:
    """``y = x * scale + offset`` of a tensor of forward() and numbers (``x / 100``, ``x * 2 - 1``,
    ``1 - x``): an IR Affine over whatever features the tensor has."""

    path: str
    scale: float
    offset: float


@dataclass
class _Merge:
    """Tensors of forward() joined: ``mode`` an IR Merge mode (``x + y`` is ``add``, ``torch.maximum``
    ``maximum``, ...) or ``"concatenate"`` (``torch.cat`` over the features)."""

    path: str
    mode: str


@dataclass
class _Chain:
    """A source reduced to layers in forward order; ``bare`` when it is a single recurrent module.

    ``order`` says where that order came from, for the refusal of modules that do not chain:
    ``"registration"`` (a module's, the ``self.<name> = ...`` order of ``__init__``), ``"keys"`` (a
    ``.pt`` state dict's key order, which is that registration order), ``"calls"`` (the order
    forward() calls them, read from its torch.fx or TorchScript graph), ``"option"`` (the ``order``
    option) or ``"sizes"`` (a safetensors file's one order in which the sizes chain).
    """

    layers: list
    bare: bool
    label: str
    source: dict = field(default_factory=dict)
    order: str = "registration"
    # Read from forward()'s graph (:mod:`.forward`), where there is one: the head of the last
    # recurrent module, and how PyTorch lays out the input and the output ("NCT" (N, C, T), "NTC",
    # "TNC", "NC"); None where no graph said.
    head: Optional[str] = None
    input_layout: Optional[str] = None
    output_layout: Optional[str] = None
    # forward() as a graph: per layer, the tensors it reads (0 the model's input, k the output of
    # layers[k - 1]), and the head of every recurrent module by path; None: each layer reads the one
    # before it, and only the last recurrent module has a head (``head``).
    reads: Optional[list] = None
    heads: Optional[dict] = None
    # forward()'s arguments, the model's inputs (the k-th is read as step -k in ``reads``)
    input_names: tuple = ("x",)


def _top(path: str) -> str:
    """The top-level module of a layer's path (``head`` of ``head.0``; ``fc`` of ``fc:activation``)."""
    return path.split(".")[0].split(":")[0]


def _units(layers: list) -> list[tuple[str, list]]:
    """Layers grouped by top-level module, in the order each first appears."""
    units: dict[str, list] = {}
    for layer in layers:
        units.setdefault(_top(layer.path), []).append(layer)
    return list(units.items())


def _unit_sizes(layers: list):
    sized = [layer for layer in layers if isinstance(layer, (_RNN, _Linear, _LayerNorm, _Embedding))]
    if not sized:
        return None
    return sized[0].input_size, sized[-1].output_size


def _chains(units: list) -> bool:
    """Whether each unit's input size is the previous unit's output size."""
    size = None
    for _, layers in units:
        sizes = _unit_sizes(layers)
        if sizes is None:
            continue
        if size is not None and sizes[0] != size:
            return False
        size = sizes[1]
    return True


def _orders_that_chain(units: list, limit: int = 7) -> Optional[list]:
    """The orders of ``units`` in which the sizes chain (None for more than ``limit`` units)."""
    if len(units) > limit:
        return None
    return [list(p) for p in itertools.permutations(units) if _chains(p)]


def _in_order(units: list, order, label: str) -> list:
    """``units`` sorted as the ``order`` option lists their names; refused unless it lists each once."""
    names = [u[0] for u in units]
    if not isinstance(order, (list, tuple)) or sorted(map(str, order)) != sorted(names):
        raise UnsupportedModel(f"{label}: option order={order!r} must list the top-level modules "
                               f"{names} once each, in forward order")
    return sorted(units, key=lambda u: list(map(str, order)).index(u[0]))
