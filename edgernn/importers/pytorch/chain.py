"""The description every source is reduced to: a chain of layers in forward order.

A live module, a TorchScript module (``modules``) and a state dict (``state_dict``) each become a
``_Chain`` of ``_RNN`` (a whole ``nn.LSTM``/``nn.GRU``/``nn.RNN``, its parameters as PyTorch names
and stores them), ``_Linear`` and ``_Act`` records; ``build`` turns a chain into the IR and ``run``
runs it with PyTorch's own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


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
class _Act:
    path: str
    activation: str  # IR name
    dim: Optional[int] = None  # Softmax/LogSoftmax: the axis, checked against the rank where it acts


@dataclass
class _Chain:
    """A source reduced to layers in forward order; ``bare`` when it is a single recurrent module."""

    layers: list
    bare: bool
    label: str
    source: dict = field(default_factory=dict)
