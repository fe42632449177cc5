"""Reading forward(): the layers in the order it calls them and the tensors each reads (a graph:
branches and merges), the permutes between the ``(N, C, T)`` convolutional part and the recurrent
part, and how each recurrent output reaches what reads it.

Where PyTorch has a graph of forward() -- ``torch.fx.symbolic_trace`` for an in-memory module (run
on proxies, no data), the graph of a TorchScript module (read, never run) -- it is walked node by
node with every tensor's layout (:class:`_T`) followed symbolically:

* ``NCT`` ``(N, C, T)``: what Conv1d, pooling and BatchNorm1d read and make;
* ``NTC`` / ``TNC``: a sequence for a ``batch_first`` / time-major RNN (and for Linear);
* ``NC`` a vector; ``NC1`` the ``(N, C, 1)`` of a global (adaptive) pooling;
* ``HN``: an RNN's ``h_n`` ``(layers * directions, N, H)`` (or ``c_n``).

The result is :class:`Forward`: the layers in the order forward() makes them, and per layer the
tensors it reads (``reads``: 0 the input, k the output of layer k - 1), so that a tensor may be read
by several layers. Element-wise arithmetic between two tensors of one layout (``a + b``, ``a - b``,
``a * b``, ``torch.maximum``, ``torch.minimum``; ``(a + b) / 2`` the average) is a merge layer,
and ``torch.cat`` over the features (C, wherever it stands in the layout) a concatenation: the
IR's ``Merge`` and ``Concatenate`` (:class:`~.chain._Merge`).

The head of each recurrent module is read from what forward() does with its results:
``out[:, -1]`` (``out[-1]`` time-major) is ``head="last"``, ``h_n[-1]`` (bidirectional:
``torch.cat([h_n[-2], h_n[-1]], 1)``) ``head="final"``, the output sequence itself ``head="every"``.
Functional activations (``F.relu``, ``torch.tanh``, ``x.relu()``, ...) become activation layers,
``torch.flatten``/``x.view(x.size(0), -1)`` a Flatten, ``F.pad(x, (left, right))`` of zeros on
the time axis a Pad1D (a Conv1d right after takes it as its padding where exact), and
``y[:, :, :-p]`` of a Conv1d padded ``p = (k-1)*d`` (before anything reads it uncropped) makes it
causal; any other ``y[:, :, a:-b]`` (or ``a:``) of ``(N, C, T)`` is a crop, a Pad1D of negative
counts. Anything else -- a merge of tensors in different layouts, over time, of a constant or a
parameter (no broadcasting), an RNN's ``c_n``, an index edgernn cannot represent, a layer whose
result is unused, an argument no layer reads, control flow that depends on the data -- is refused naming it
(:class:`GraphRefusal`). A graph that cannot be had gives None: forward() that
torch.fx cannot trace, or whose trace computes something else than the module on a seeded probe
(:func:`_faithful`: Python inspecting fx's proxies, such as ``isinstance(states, tuple)``).
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, replace
from typing import Optional

from .activations import _PLAIN_ACTIVATIONS, _SKIP_CLASSES as _SKIP
from .chain import _RNN, _Act, _Embedding, _LayerNorm, _Linear, _Merge, _Scale
from .conv import _Conv, _Flatten, _Norm, _Pad, _Pool, _Unread, _Upsample

_INT64_MAX = 9223372036854775807
_MAX_DEPTH = 32

# Functional activations (torch.relu, F.relu, x.relu(), aten::relu) -> IR names.
_FUNCTIONS = {cls.lower(): name for cls, name in _PLAIN_ACTIVATIONS.items()}
_FUNCTIONS.update({"logsigmoid": "log_sigmoid", "log_sigmoid": "log_sigmoid", "hardsigmoid": "hard_sigmoid", "hardswish": "hard_silu",
                   "tanhshrink": "tanh_shrink", "gelu": "gelu", "elu": "elu", "celu": "celu",
                   "softplus": "softplus", "hardtanh": "hard_tanh"})
# Element-wise arithmetic between tensors of forward() (operator.add, torch.add, x.add, aten::add,
# y += x as operator.iadd or aten::add_) -> IR Merge modes.
_MERGES = {"add": "add", "iadd": "add", "sub": "subtract", "subtract": "subtract", "isub": "subtract",
           "mul": "multiply", "multiply": "multiply", "imul": "multiply", "maximum": "maximum",
           "minimum": "minimum"}
# A tensor of forward() and a number (x * c, c * x, x + c, x - c, c - x; aten::rsub(x, c) is c - x;
# x / c in :meth:`_Reader.divide`): (scale, offset) of y = x * scale + offset, from the number c and
# whether the tensor came first; None where that is not the form (c / x).
_SCALINGS = {
    **{name: lambda c, first: (c, 0.0) for name in ("mul", "multiply", "imul")},
    **{name: lambda c, first: (1.0, c) for name in ("add", "iadd")},
    **{name: lambda c, first: (1.0, -c) if first else (-1.0, c) for name in ("sub", "subtract", "isub")},
    "rsub": lambda c, first: (-1.0, c) if first else None,
}
_IDENTITIES = {"contiguous", "dropout", "dropout_", "feature_dropout", "alpha_dropout", "clone", "detach",
               "float", "identity", "to", "cpu"}


class GraphRefusal(Exception):
    """forward() does something edgernn cannot represent; the message names it."""


@dataclass
class Forward:
    """What the graph says: layers in forward order, the tensors each reads (0 the input, k the
    output of ``layers[k - 1]``), the head of the last recurrent module and of every one by path, the
    layouts of input and output."""

    layers: list
    reads: list
    head: Optional[str]
    heads: dict
    input_layout: str
    output_layout: str
    # forward()'s arguments, the model's inputs in its order: the tensor of the k-th has step -k
    # (the first's, 0), all laid out ``input_layout``
    input_names: tuple = ("x",)


@dataclass(frozen=True)
class _T:
    """A tensor of forward(), symbolically: its layout, the number of layers made before it (0 the
    input, k the output of layer k - 1), and what it is of a recurrent module (``out``, ``h``, ``c``,
    ``h_last`` = h_n[-1], ``h_prev`` = h_n[-2]), of a Conv1d (``conv``), or ``average``: a sum
    divided by its count (:meth:`_Reader.divide`)."""

    layout: str
    step: int
    rnn: Optional[_RNN] = None
    kind: Optional[str] = None
    conv: Optional[_Conv] = None


_BATCH = object()  # x.size(0)


@dataclass(frozen=True)
class _Module:
    """A submodule in a TorchScript graph, at ``path``."""

    path: str
    module: object


@dataclass(frozen=True)
class _Function:
    """A function constant in a TorchScript graph (``F.relu`` in a scripted forward)."""

    name: str


class _Reader:
    def __init__(self, by_path: dict, input_layout: str):
        self.by_path = by_path
        self.layers: list = []
        self.reads: list = []  # per layer, the steps of the tensors it reads
        self.read: set = set()  # the steps some layer or forward()'s result reads
        self.cropped: set = set()  # the steps of Conv1d outputs made causal by a crop
        self.averaged: set = set()  # the steps of sums made averages by a division
        self.called: set = set()
        self.heads: dict = {}  # id(rnn) -> head of that recurrent module
        self.names: set = set(by_path)
        self.input = _T(input_layout, 0)

    def argument(self, k: int) -> _T:
        """forward()'s k-th tensor argument (0 the first): step -k, laid out as the first."""
        return self.input if k == 0 else _T(self.input.layout, -k)

    # --- helpers -------------------------------------------------------------------------------

    def _name(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def _head(self, rnn: _RNN, head: str, what: str):
        before = self.heads.get(id(rnn))
        if before is not None and before != head:
            raise GraphRefusal(f"forward() uses the results of recurrent module {rnn.path!r} twice ({what})")
        self.heads[id(rnn)] = head

    def _take(self, x, what: str) -> _T:
        """``x`` read by a layer or returned: a tensor of forward() that edgernn passes on."""
        if not isinstance(x, _T):
            raise GraphRefusal(f"{what} reads {_describe(x)}, not a tensor of forward()")
        if x.kind == "out":
            self._head(x.rnn, "every", what)
        elif x.kind == "h_last" and not x.rnn.bidirectional:
            self._head(x.rnn, "final", what)
        elif x.kind in ("h", "c", "h_last", "h_prev"):
            raise GraphRefusal(f"{what} reads {_describe(x)}; edgernn can pass on only the output sequence, its last "
                               "step (out[:, -1]) or the last layer's final hidden state (h_n[-1], or "
                               "torch.cat([h_n[-2], h_n[-1]], 1) when bidirectional)")
        if x.conv is not None and x.step in self.cropped:
            raise GraphRefusal(f"{what} reads the output of Conv1d {x.conv.path!r} uncropped, which forward() also "
                               "crops to make it causal; edgernn computes one of the two")
        if x.step in self.averaged and x.kind != "average":
            raise GraphRefusal(f"{what} reads the sum {self.layers[x.step - 1].path!r}, which forward() also divides "
                               "into an average; edgernn computes one of the two")
        self.read.add(x.step)
        return x

    def _add(self, layer, inputs, layout: str, **extra) -> _T:
        """``layer`` appended, reading ``inputs`` (a tensor, or a list for a merge); its output."""
        self.layers.append(layer)
        self.reads.append(tuple(x.step for x in (inputs if isinstance(inputs, list) else [inputs])))
        return _T(layout, len(self.layers), **extra)

    # --- operations ----------------------------------------------------------------------------

    def module(self, path: str, cls: str, args: list, kwargs: dict):
        where = f"module {path!r} ({cls})"
        layer = self.by_path.get(path)
        if layer is None and cls in _SKIP:
            return args[0] if args else None  # a traced Identity is called without its input
        if layer is None:
            raise GraphRefusal(f"forward() calls {where}, which is not a layer edgernn reads")
        if path in self.called:
            raise GraphRefusal(f"forward() calls {where} twice")
        self.called.add(path)
        if len(args) != 1 or any(v is not None for v in kwargs.values()):
            raise GraphRefusal(f"forward() calls {where} with {len(args)} inputs; edgernn passes one tensor (an "
                               "initial state or a second input cannot be represented)")
        if isinstance(layer, _Unread):
            raise GraphRefusal(layer.message)
        if isinstance(layer, dict):  # nn.Flatten: its start and end dims
            return self.flatten(args[0], layer["start_dim"], layer["end_dim"], where, path)
        x = self._take(args[0], f"{where}")
        if isinstance(layer, _RNN):
            wanted = "NTC" if layer.batch_first else "TNC"
            if x.layout != wanted:
                raise GraphRefusal(
                    f"{where} with batch_first={layer.batch_first} reads a tensor laid out {_LAYOUT[x.layout]}, "
                    f"not {_LAYOUT[wanted]}: its time axis would not be the sequence's (permute first)")
            out = self._add(layer, x, wanted, rnn=layer, kind="out")
            h = replace(out, layout="HN", kind="h")
            return (out, (h, replace(h, kind="c")) if layer.mode == "LSTM" else h)
        if isinstance(layer, _Embedding):
            if x.layout not in _CODES or x.step:
                raise GraphRefusal(f"{where} reads {_LAYOUT.get(x.layout, x.layout)}; edgernn's Embedding reads the "
                                   "model's input, integer codes (N, T) or (T, N)")
            return self._add(layer, x, _CODES[x.layout])
        if x.layout in _CODES:
            raise GraphRefusal(f"{where} reads the integer codes of the model's input; only an Embedding reads them")
        if isinstance(layer, (_Linear, _LayerNorm)):
            # A Linear (a LayerNorm) acts on the last axis: in (N, C, T) that is the time.
            if x.layout in ("NCT", "NC1"):
                raise GraphRefusal(f"{where} acts on the last axis of a tensor laid out {_LAYOUT[x.layout]}, which "
                                   "is not the features; permute first")
            return self._add(layer, x, x.layout)
        if isinstance(layer, _Act):
            if layer.dim is not None:  # Softmax/LogSoftmax: over the channels, wherever they stand
                layer = replace(layer, dim=self._feature_dim(x, layer.dim, where))
            return self._add(layer, x, x.layout)
        if isinstance(layer, _Norm):
            if x.layout not in ("NCT", "NC", "NC1"):
                raise GraphRefusal(f"{where} normalizes axis 1 of a tensor laid out {_LAYOUT[x.layout]}, which is "
                                   "not the channels")
            return self._add(layer, x, x.layout)
        if x.layout != "NCT":
            raise GraphRefusal(f"{where} reads a tensor laid out {_LAYOUT[x.layout]}, not (N, C, T)")
        if isinstance(layer, _Conv):
            return self._add(layer, x, "NCT", conv=layer)
        if isinstance(layer, (_Pad, _Upsample)):
            return self._add(layer, x, "NCT")
        return self._add(layer, x, "NC1" if layer.global_pool else "NCT")

    def pad(self, x, pad, mode, value):
        """``F.pad(x, (left, right))`` of zeros on the time axis, the last of ``(N, C, T)``."""
        what = f"forward()'s pad({tuple(pad) if isinstance(pad, (list, tuple)) else pad!r}, mode={mode!r})"
        x = self._take(x, what)
        pads = list(pad) if isinstance(pad, (list, tuple)) else []
        if mode != "constant" or value not in (None, 0, 0.0) or len(pads) < 2 or len(pads) % 2 \
                or not all(isinstance(p, int) for p in pads) or any(pads[2:]):
            raise GraphRefusal(f"{what} with value={value!r} is not supported: zeros on the last axis only, "
                               "pad=(left, right)")
        if x.layout != "NCT":
            raise GraphRefusal(f"{what} pads the last axis of a tensor laid out {_LAYOUT[x.layout]}, which is not "
                               "the time axis of (N, C, T)")
        return self._add(_Pad(self._name("pad"), pads[0], pads[1]), x, "NCT")

    def activation(self, function: str, x, dim=None):
        name = _FUNCTIONS.get(function) if function not in ("softmax", "log_softmax") else function
        what = f"forward()'s {function}()"
        x = self._take(x, what)
        if name in ("softmax", "log_softmax"):
            dim = self._feature_dim(x, dim, what)
        return self._add(_Act(self._name(function), name, dim), x, x.layout)

    @staticmethod
    def _feature_dim(x: _T, dim, what: str) -> int:
        """-1 (the IR's feature axis) for a softmax over ``dim`` of ``x`` where that is the channels."""
        rank = len(x.layout)
        if isinstance(dim, int) and not isinstance(dim, bool) and -rank <= dim < rank \
                and dim % rank == x.layout.index("C"):
            return -1
        raise GraphRefusal(f"{what} over dim={dim} of a tensor laid out {_LAYOUT[x.layout]} is not over the "
                           "features (C)")

    def permute(self, x, dims, what: str = "permute"):
        if not isinstance(x, _T) or x.layout in ("HN",):
            raise GraphRefusal(f"forward() permutes {_describe(x)}")
        rank = len(x.layout)
        dims = [d % rank for d in dims]
        if sorted(dims) != list(range(rank)):
            raise GraphRefusal(f"forward()'s {what}{tuple(dims)} is not a permutation of a rank-{rank} tensor")
        layout = "".join(x.layout[d] for d in dims)
        if layout not in _LAYOUT:
            raise GraphRefusal(f"forward()'s {what} lays a tensor {_LAYOUT[x.layout]} out as "
                               f"({', '.join(layout)}), which edgernn cannot represent")
        return replace(x, layout=layout, conv=None)

    def transpose(self, x, a: int, b: int):
        rank = len(x.layout) if isinstance(x, _T) else 3
        dims = list(range(rank))
        dims[a % rank], dims[b % rank] = dims[b % rank], dims[a % rank]
        return self.permute(x, dims, "transpose")

    def index(self, x, items: list):
        """``x[items]``: items per leading dim, ``("slice", start, stop, step)`` or ``("int", i)``."""
        if isinstance(x, tuple):
            if len(items) == 1 and items[0][0] == "int":
                return x[items[0][1]]
            raise GraphRefusal("forward() indexes a tuple of results in a way edgernn cannot read")
        if not isinstance(x, _T):
            raise GraphRefusal(f"forward() indexes {_describe(x)}")
        while items and _full(items[-1]):
            items = items[:-1]
        last_step = (x.layout == "NTC" and len(items) == 2 and _full(items[0]) and items[1] == ("int", -1)) or \
            (x.layout == "TNC" and items == [("int", -1)])
        if last_step and x.kind == "out":
            self._head(x.rnn, "last", "out[:, -1]")
            return _T("NC", x.step)
        if last_step:
            raise GraphRefusal("forward() takes the last step of a sequence that is not a recurrent module's output "
                               "(after a merge or a layer); edgernn takes only out[:, -1] of a recurrent module")
        if x.kind == "h" and len(items) == 1 and items[0][0] == "int":
            index = items[0][1]
            if index == -1:
                return replace(x, layout="NC", kind="h_last")
            if index == -2 and x.rnn.bidirectional:
                return replace(x, layout="NC", kind="h_prev")
            raise GraphRefusal(f"forward() takes h_n[{index}] of recurrent module {x.rnn.path!r}; edgernn passes on "
                               "the last layer's (h_n[-1], with h_n[-2] when bidirectional)")
        if x.kind == "c":
            raise GraphRefusal(f"forward() reads c_n, the final cell state of recurrent module {x.rnn.path!r}, which "
                               "edgernn cannot pass on (h_n[-1] or the output can)")
        if x.conv is not None and x.layout == "NCT" and len(items) == 3 and _full(items[0]) and _full(items[1]):
            start, stop, step = items[2][1:] if items[2][0] == "slice" else (None, None, None)
            conv = x.conv
            pad = (int(conv.weight.shape[2]) - 1) * conv.dilation
            if items[2][0] == "slice" and start in (None, 0) and step in (None, 1) and pad > 0 and stop == -pad \
                    and conv.padding == pad and conv.stride == 1 and x.step not in self.read:
                # PyTorch's causal convolution: pad (k-1)*d on both sides, drop the right end
                self.layers[x.step - 1] = replace(conv, causal=True)
                self.cropped.add(x.step)
                return replace(x, conv=None)
        if x.layout == "NCT" and len(items) == 3 and _full(items[0]) and _full(items[1]) and items[2][0] == "slice":
            start, stop, step = items[2][1:]
            stop = None if stop == _INT64_MAX else stop
            if step in (None, 1) and (start or 0) >= 0 and (stop is None or stop < 0):
                # y[:, :, a:-b] drops a timesteps at the start, b at the end, on any length (Keras's
                # Cropping1D((a, b))): a Pad1D of negative counts. A positive stop fixes the length: refused.
                x = self._take(x, f"forward()'s [:, :, {_show(items[2])}]")
                return self._add(_Pad(self._name("crop"), -(start or 0), stop or 0), x, "NCT")
        if x.layout == "NC1" and len(items) == 3 and _full(items[0]) and _full(items[1]) and items[2] == ("int", 0):
            return replace(x, layout="NC")
        raise GraphRefusal(f"forward() indexes a tensor laid out {_LAYOUT.get(x.layout, x.layout)} with "
                           f"[{', '.join(_show(i) for i in items)}], which edgernn cannot represent")

    def flatten(self, x, start: int, end: int, where: str = "forward()'s flatten", name: Optional[str] = None):
        if not isinstance(x, _T) or x.layout == "HN":
            raise GraphRefusal(f"{where} flattens {_describe(x)}")
        rank = len(x.layout)
        start, end = start % rank, end % rank
        if x.layout in ("NC", "NC1") and start == 1 and end == rank - 1:
            return replace(x, layout="NC", conv=None)
        if x.layout in ("NCT", "NTC") and (start, end) == (1, 2):
            x = self._take(x, where)
            return self._add(_Flatten(name or self._name("flatten"), x.layout == "NCT"), x, "NC")
        raise GraphRefusal(f"{where} flattens dims {start}..{end} of a tensor laid out {_LAYOUT[x.layout]}, which "
                           "edgernn cannot represent (flatten(1) of (N, C, T) or (N, T, C) only)")

    def squeeze(self, x, dim):
        if isinstance(x, _T) and x.layout == "NC1" and dim is not None and dim % 3 == 2:
            return replace(x, layout="NC")
        if isinstance(x, _T) and x.kind == "h" and dim == 0 and x.rnn.num_layers == 1 and not x.rnn.bidirectional:
            return replace(x, layout="NC", kind="h_last")  # h_n.squeeze(0) of one layer: h_n[-1]
        raise GraphRefusal(f"forward()'s squeeze(dim={dim}) of {_describe(x)} cannot be represented")

    def reshape(self, x, shape):
        if isinstance(x, _T) and len(shape) == 2 and shape[0] is _BATCH and shape[1] == -1:
            return self.flatten(x, 1, -1, "forward()'s view/reshape(x.size(0), -1)")
        shown = ["x.size(0)" if s is _BATCH else repr(s) for s in shape]
        raise GraphRefusal(f"forward()'s view/reshape({', '.join(shown)}) cannot be represented (only "
                           "x.view(x.size(0), -1) as a flatten)")

    def reduce(self, x, kind: str, dims, keepdim):
        """``x.mean(dim)`` / ``x.amax(dim)`` over the time axis: global pooling."""
        what = f"forward()'s {'mean' if kind == 'average' else 'amax'}(dim={dims})"
        x = self._take(x, what)
        dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
        rank = len(x.layout)
        if "T" not in x.layout or len(dims) != 1 or not isinstance(dims[0], int) or dims[0] % rank != \
                x.layout.index("T"):
            raise GraphRefusal(f"{what} of a tensor laid out {_LAYOUT[x.layout]} is not over the time axis alone")
        if keepdim and x.layout != "NCT":
            raise GraphRefusal(f"{what} with keepdim=True of a tensor laid out {_LAYOUT[x.layout]}")
        return self._add(_Pool(self._name(f"global_{kind}"), kind, global_pool=True), x, "NC1" if keepdim else "NC")

    def size(self, x, dim):
        if dim == 0:
            return _BATCH
        raise GraphRefusal(f"forward() reads x.size({dim}); edgernn's graph cannot depend on sizes")

    def cat(self, values, dim):
        """``torch.cat(values, dim)``: of a bidirectional module's ``h_n[-2]`` and ``h_n[-1]`` its
        final state (``head="final"``), else tensors of one layout over their features (C): an IR
        Concatenate."""
        if len(values) == 2 and all(isinstance(v, _T) for v in values):
            prev, last = values
            if prev.kind == "h_prev" and last.kind == "h_last" and prev.rnn is last.rnn and dim in (1, -1):
                self._head(last.rnn, "final", "torch.cat([h_n[-2], h_n[-1]], 1)")
                return _T("NC", last.step)
        what = f"forward()'s cat(dim={dim})"
        tensors = self._operands(values, what)
        layout = tensors[0].layout
        rank = len(layout)
        if not isinstance(dim, int) or isinstance(dim, bool) or not -rank <= dim < rank \
                or dim % rank != layout.index("C"):
            axis = "the time axis" if isinstance(dim, int) and "T" in layout and dim % rank == layout.index("T") \
                else f"dim {dim}"
            raise GraphRefusal(f"{what} joins tensors laid out {_LAYOUT[layout]} over {axis}; edgernn joins them "
                               "over their features (C) only")
        return self._add(_Merge(self._name("cat"), "concatenate"), tensors, layout)

    def merge(self, function: str, values) -> _T:
        """``a + b``, ``a - b``, ``a * b``, ``torch.maximum(a, b)``, ``torch.minimum(a, b)`` of two
        tensors of forward() in one layout: an IR Merge, element-wise (no broadcasting)."""
        tensors = self._operands(values, f"forward()'s {function}()")
        return self._add(_Merge(self._name(_MERGES[function]), _MERGES[function]), tensors, tensors[0].layout)

    def divide(self, x, by) -> _T:
        """``(a + b) / 2``: a sum of n tensors divided by n, the average (the sum's Merge becomes an
        IR Merge ``average``, where nothing has read the sum itself); another tensor divided by a
        number, ``x * (1 / by)`` (:meth:`scale`)."""
        layer = self.layers[x.step - 1] if isinstance(x, _T) and x.step else None
        number = _number(by)
        if (isinstance(layer, _Merge) and layer.mode == "add" and x.kind is None and number is not None
                and number == len(self.reads[x.step - 1]) and x.step not in self.read):
            self.layers[x.step - 1] = replace(layer, mode="average")
            self.averaged.add(x.step)
            return replace(x, kind="average")
        if isinstance(x, _T) and number is not None and number != 0:
            return self.scale(x, 1.0 / number, 0.0, f"forward() divides {_describe(x)} by {number!r}")
        raise GraphRefusal(f"forward() divides {_describe(x)} by {_describe(by)}; edgernn divides a tensor only by a "
                           "number other than 0")

    def scale(self, x, scale: float, offset: float, what: str) -> _T:
        """``x * scale + offset`` of a tensor of forward() ``x``: a :class:`~.chain._Scale` layer."""
        x = self._take(x, what)
        if x.layout in _CODES or x.layout == "HN":
            raise GraphRefusal(f"{what}: edgernn scales features, sequences or vectors, not {_describe(x)}")
        return self._add(_Scale(self._name("scale"), float(scale), float(offset)), x, x.layout)

    def _operands(self, values, what: str) -> list:
        """The tensors a merge or a concatenation reads: tensors of forward() (no constant, parameter
        or broadcast), laid out alike, none of them integer codes or a recurrent module's state."""
        values = list(values)
        if len(values) < 2 or not all(isinstance(v, _T) for v in values):
            shown = ", ".join(_describe(v) for v in values)
            raise GraphRefusal(f"{what} of {shown}: edgernn merges two or more tensors of forward() of one shape "
                               "(no constant, parameter or broadcasting)")
        layouts = sorted({v.layout for v in values})
        if len(layouts) > 1:
            raise GraphRefusal(f"{what} merges tensors laid out {' and '.join(_LAYOUT[lay] for lay in layouts)}; "
                               "edgernn merges tensors of one layout (the same axes in the same order)")
        if layouts[0] in _CODES or layouts[0] == "HN":
            raise GraphRefusal(f"{what} merges {_describe(values[0])}; edgernn merges features, sequences or vectors")
        return [self._take(v, what) for v in values]

    def output(self, x) -> Forward:
        if isinstance(x, (tuple, list)):
            raise GraphRefusal(f"forward() returns {len(x)} values; edgernn's model has one output")
        x = self._take(x, "forward()'s result")
        if x.layout not in ("NCT", "NTC", "TNC", "NC"):
            raise GraphRefusal(f"forward() returns a tensor laid out {_LAYOUT[x.layout]}")
        for step, layer in enumerate(self.layers, 1):
            if step not in self.read:
                what = "recurrent module" if isinstance(layer, _RNN) else "layer"
                raise GraphRefusal(f"forward() does not use the output of {what} {layer.path!r}")
        rnns = [layer for layer in self.layers if isinstance(layer, _RNN)]
        heads = {rnn.path: self.heads.get(id(rnn)) for rnn in rnns}
        return Forward(self.layers, self.reads, heads[rnns[-1].path] if rnns else None, heads, self.input.layout,
                       x.layout)


_LAYOUT = {"NCT": "(N, C, T)", "NTC": "(N, T, C)", "TNC": "(T, N, C)", "NC": "(N, C)", "NC1": "(N, C, 1)",
           "HN": "(layers, N, H)", "NT": "(N, T) integer codes", "TN": "(T, N) integer codes"}
_CODES = {"NT": "NTC", "TN": "TNC"}  # the layout of integer codes -> that of their embeddings


def _full(item) -> bool:
    return item[0] == "slice" and item[1] in (None, 0) and item[2] in (None, _INT64_MAX) and item[3] in (None, 1)


def _show(item) -> str:
    if item[0] == "int":
        return str(item[1])
    start, stop, step = item[1:]
    text = f"{'' if start in (None, 0) else start}:{'' if stop in (None, _INT64_MAX) else stop}"
    return text + ("" if step in (None, 1) else f":{step}")


def _describe(x) -> str:
    if isinstance(x, _T):
        names = {"h": "h_n", "c": "c_n", "h_last": "h_n[-1]", "h_prev": "h_n[-2]"}
        if x.kind in names:
            return f"{names[x.kind]} of recurrent module {x.rnn.path!r}"
        return f"a tensor laid out {_LAYOUT.get(x.layout, x.layout)}"
    if isinstance(x, tuple):
        return "a tuple"
    return f"the value {x!r}"


# --- the graphs --------------------------------------------------------------------------------


def read_forward(module, by_path: dict, input_layouts: list[str], features: int) -> Optional[Forward]:
    """The forward() of ``module`` read against its layers ``by_path``; None where no graph can be
    had. Each input layout is tried in turn (the first that reads wins); raises GraphRefusal with the
    first layout's refusal when none reads. ``features``: what the first layer reads (for the probe)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(module, torch.jit.ScriptModule):
            graph = None  # the module's own graph: what it runs
        else:
            try:
                graph = _fx_graph(module, set(by_path))
            except Exception:  # noqa: BLE001 - forward cannot be traced: no graph
                return None
    first = None
    for layout in input_layouts:
        reader = _Reader(by_path, layout)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read = _read_script(module, reader) if graph is None else _read_fx(graph, module, reader)
        except GraphRefusal as refusal:
            first = first or (refusal, layout)
            continue
        except (AttributeError, TypeError, ValueError, IndexError, KeyError, RuntimeError) as exc:
            # a graph of a shape this reader does not expect: refused, never a crash
            first = first or (GraphRefusal(f"forward()'s graph could not be read ({type(exc).__name__}: {exc})"),
                              layout)
            continue
        return read if graph is None or _faithful(module, graph, layout, input_sizes(read, features)) else None
    if graph is not None and not _faithful(module, graph, first[1], [features]):
        return None
    raise first[0]


_PROBE_STEPS = 32


def _faithful(module, graph, layout: str, features: list) -> bool:
    """Whether the torch.fx trace computes what the module does, on one seeded random probe.

    torch.fx runs forward() on proxies, and Python that inspects them is traced as it ran on the
    proxy, not as it runs on tensors: ``states[0] if isinstance(states, tuple) else states`` takes
    the else branch. Such a trace is no graph of the module. A probe the module itself cannot run
    (a Flatten fixing another length) proves nothing, and the trace stands."""
    import torch

    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    seeded = torch.Generator().manual_seed(0)
    xs = []
    for size in features:  # one probe per input
        shape = {"NCT": (2, size, _PROBE_STEPS), "NTC": (2, _PROBE_STEPS, size),
                 "TNC": (_PROBE_STEPS, 2, size), "NC": (2, size), "NT": (2, _PROBE_STEPS),
                 "TN": (_PROBE_STEPS, 2)}[layout]
        if layout in _CODES:  # integer codes an Embedding looks up: ``size`` is its vocabulary
            xs.append(torch.randint(0, size, shape, generator=seeded))
        else:
            xs.append(torch.randn(shape, generator=seeded).to(dtype))
    training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                want = module(*xs)
            except Exception:  # noqa: BLE001 - the module does not run the probe: inconclusive
                return True
            try:
                got = torch.fx.GraphModule(module, graph)(*xs)
            except Exception:  # noqa: BLE001 - the module runs it and its trace does not
                return False
    finally:
        module.train(training)
    return _same(want, got)


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _fx_graph(module, leaves: set):
    import torch.fx

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualified_name):
            return qualified_name in leaves or super().is_leaf_module(m, qualified_name)

    return _Tracer().trace(module)


def _fx_items(index) -> list:
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for item in items:
        if isinstance(item, slice):
            out.append(("slice", item.start, item.stop, item.step))
        elif isinstance(item, int):
            out.append(("int", item))
        else:
            raise GraphRefusal(f"forward() indexes with {item!r}, which edgernn cannot represent")
    return out


def _read_fx(graph, module, reader: _Reader) -> Forward:
    import torch

    values: dict = {}
    modules = dict(module.named_modules())

    def arg(a):
        if isinstance(a, torch.fx.Node):
            return values[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(arg(v) for v in a)
        return a

    names = []
    for node in graph.nodes:
        args = [arg(a) for a in node.args]
        kwargs = {k: arg(v) for k, v in node.kwargs.items()}
        if node.op == "placeholder":
            values[node.name] = reader.argument(len(names))
            names.append(str(node.target))
        elif node.op == "call_module":
            target = str(node.target)
            cls = type(modules[target]).__name__
            values[node.name] = reader.module(target, cls, args, kwargs)
        elif node.op in ("call_function", "call_method"):
            name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            values[node.name] = _apply(reader, name, args, kwargs, node.op == "call_method")
        elif node.op == "output":
            return _named(reader.output(args[0]), names)
        elif node.op == "get_attr":
            raise GraphRefusal(f"forward() reads the tensor {node.target!r} directly; edgernn reads modules only")
    raise GraphRefusal("forward() returns nothing")


def _apply(reader: _Reader, name: str, args: list, kwargs: dict, method: bool):
    """One function or method call of forward(), from either graph."""
    name = name.lstrip("_").rstrip("_") if name not in ("__getitem__",) else name
    x = args[0] if args else None
    if name in ("getitem", "__getitem__"):
        return reader.index(x, _fx_items(args[1]))
    if name in _IDENTITIES:
        return x
    if name in ("softmax", "log_softmax"):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        return reader.activation(name, x, dim)
    if name in _FUNCTIONS:
        if name == "gelu" and kwargs.get("approximate", args[1] if len(args) > 1 else "none") not in ("none", None):
            raise GraphRefusal("forward()'s gelu(approximate='tanh') is not supported (edgernn's gelu is the erf form)")
        if name in ("elu", "celu") and kwargs.get("alpha", args[1] if len(args) > 1 else 1.0) != 1.0:
            raise GraphRefusal(f"forward()'s {name} with alpha != 1 is not supported")
        if name in ("leaky_relu", "softplus", "hardtanh") and (len(args) > 1 or kwargs.keys() - {"inplace"}):
            raise GraphRefusal(f"forward()'s {name} with arguments is not supported; use its module")
        return reader.activation(name, x)
    if name == "permute":
        dims = args[1:] if method and not isinstance(args[1] if len(args) > 1 else None, (list, tuple)) else args[1]
        return reader.permute(x, list(kwargs.get("dims", dims)))
    if name == "transpose":
        return reader.transpose(x, args[1], args[2])
    if name == "flatten":
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        return reader.flatten(x, start, end)
    if name == "squeeze":
        return reader.squeeze(x, kwargs.get("dim", args[1] if len(args) > 1 else None))
    if name in ("view", "reshape"):
        shape = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
        return reader.reshape(x, list(shape))
    if name == "size":
        return reader.size(x, kwargs.get("dim", args[1] if len(args) > 1 else None))
    if name in ("mean", "amax"):
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        if dims is None or (name == "mean" and kwargs.get("dtype", args[3] if len(args) > 3 else None) is not None):
            raise GraphRefusal(f"forward()'s {name}() over all axes (or with a dtype) cannot be represented")
        return reader.reduce(x, "average" if name == "mean" else "max", dims, bool(keepdim))
    if name in ("pad", "constant_pad_nd"):  # F.pad(x, pad, mode, value), aten::constant_pad_nd(x, pad, value)
        pad = kwargs.get("pad", args[1] if len(args) > 1 else None)
        if name == "pad":
            mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
            value = kwargs.get("value", args[3] if len(args) > 3 else None)
        else:
            mode, value = "constant", kwargs.get("value", args[2] if len(args) > 2 else 0)
        return reader.pad(x, pad, mode, value)
    if name == "cat":
        return reader.cat(list(x), kwargs.get("dim", args[1] if len(args) > 1 else 0))
    if name in ("truediv", "div") and len(args) == 2 and not kwargs:
        return reader.divide(x, args[1])
    if name == "neg" and len(args) == 1:
        return reader.scale(x, -1.0, 0.0, f"forward()'s neg() of {_describe(x)}")
    if name in _SCALINGS:
        scaled = _scaling(reader, name, args, kwargs)
        if scaled is not None:
            return scaled
    if name in _MERGES:
        # aten::add/sub carry alpha (y = a + alpha * b) as a third argument, torch.add(a, b, alpha=...) as a keyword
        alpha = kwargs.get("alpha", args[2] if name in ("add", "sub", "iadd", "isub") and len(args) > 2 else 1)
        operands = list(args[:2]) + [kwargs[k] for k in ("input", "other") if k in kwargs]
        if alpha != 1 or len(operands) != 2:
            raise GraphRefusal(f"forward()'s {name}() with alpha={alpha!r} or other arguments cannot be represented")
        return reader.merge(name, operands)
    raise GraphRefusal(f"forward() calls {name}(), which edgernn cannot represent (edgernn reads layers, "
                       "activations, permutes, indexes of recurrent results, element-wise merges of tensors and "
                       "torch.cat over the features)")


def _number(value) -> Optional[float]:
    """``value`` as a float where it is a number (a Python int or float, or a one-element tensor: a
    traced graph's constant); None otherwise (a bool, a tensor of forward(), anything else)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    numel, item = getattr(value, "numel", None), getattr(value, "item", None)
    if callable(numel) and callable(item) and numel() == 1:
        value = item()
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return None


def _scaling(reader: _Reader, name: str, args: list, kwargs: dict):
    """``x * c``, ``x + c``, ``c - x``, ... of a tensor of forward() and a number (:data:`_SCALINGS`):
    its scaled tensor; None where the operands are not one tensor and one number."""
    operands = list(args[:2]) + [kwargs[k] for k in ("input", "other") if k in kwargs]
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    if len(operands) != 2 or alpha != 1:
        return None
    for first, (x, c) in ((True, operands), (False, operands[::-1])):
        number = _number(c)
        if isinstance(x, _T) and number is not None:
            made = _SCALINGS[name](number, first)
            if made is None:
                return None
            return reader.scale(x, *made, f"forward()'s {name}() of {_describe(x)} and {number!r}")
    return None


# --- TorchScript ---------------------------------------------------------------------------------

_RNN_OPS = {"aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu"}


def _traced_rnn_result(child, method: str, out: _T):
    """What a traced RNN submodule's method returns, as results of ``out``'s recurrent module: a
    traced submodule returns only what forward() used (the output, h_n or c_n, or a tuple)."""
    graph = _method_graph(child, method)
    op = next((n for n in graph.nodes() if n.kind() in _RNN_OPS), None)
    if op is None:
        raise GraphRefusal(f"the traced recurrent module {out.rnn.path!r} has no recurrent op in its graph")
    kinds = {o.debugName(): k for o, k in zip(op.outputs(), ("out", "h", "c"))}
    h = replace(out, layout="HN", kind="h")
    made = {"out": out, "h": h, "c": replace(h, kind="c")}

    def value(v):
        if v.debugName() in kinds:
            return made[kinds[v.debugName()]]
        node = v.node()
        if node.kind() == "prim::TupleConstruct":
            return tuple(value(i) for i in node.inputs())
        raise GraphRefusal(f"the traced recurrent module {out.rnn.path!r} returns {node.kind()}")

    returned = list(graph.return_node().inputs())
    return value(returned[0]) if len(returned) == 1 else tuple(value(v) for v in returned)


def _read_script(module, reader: _Reader) -> Forward:
    graph = module.graph
    self_input, *inputs = list(graph.inputs())
    if not inputs:
        raise GraphRefusal("forward() takes no argument")
    values = {self_input.debugName(): _Module("", module)}
    values.update((v.debugName(), reader.argument(k)) for k, v in enumerate(inputs))
    _script_block(graph.nodes(), values, reader, 0)
    returned = [_resolve(reader, values[v.debugName()]) for v in graph.return_node().inputs()]
    read = reader.output(returned[0] if len(returned) == 1 else tuple(returned))
    return _named(read, [v.debugName().split(".")[0] for v in inputs])


def _named(read: Forward, names: list) -> Forward:
    """``read`` with forward()'s argument names; every argument must reach a layer. One argument is
    the model input ``x``, as without a graph."""
    for k, name in enumerate(names):
        if not any(-k in steps for steps in read.reads):
            raise GraphRefusal(f"forward()'s argument {name!r} reaches no layer")
    return replace(read, input_names=tuple(names) if len(names) > 1 else ("x",))


def input_sizes(read: Forward, default: int) -> list:
    """The features (vocabulary, for codes) of each input of ``read``: what the first layer reading
    it takes (``default`` where that is a merge)."""
    sizes = []
    for k in range(len(read.input_names)):
        first = next((layer for layer, steps in zip(read.layers, read.reads) if -k in steps), None)
        size = getattr(first, "input_size", None)
        if isinstance(first, _Embedding):
            size = first.weight.shape[0]
        sizes.append(default if size is None else size)
    return sizes


def _script_block(nodes, values: dict, reader: _Reader, depth: int):
    import torch

    if depth > _MAX_DEPTH:
        raise GraphRefusal("forward() nests method calls too deep")
    for node in nodes:
        kind = node.kind()
        ins = [values.get(v.debugName()) for v in node.inputs()]
        if kind not in ("aten::slice", "aten::select"):
            ins = [_resolve(reader, v) for v in ins]
        outs = list(node.outputs())

        def put(value):
            values[outs[0].debugName()] = value

        if kind == "prim::Constant":
            out = outs[0]
            if out.type().kind() == "FunctionType":
                put(_Function(node.s("name")))
            else:
                try:
                    put(out.toIValue())
                except Exception:  # noqa: BLE001 - a constant that is not a plain value
                    put(None)
        elif kind == "prim::GetAttr":
            owner = ins[0]
            name = node.s("name")
            if isinstance(owner, _Module):
                child = getattr(owner.module, name)
                path = f"{owner.path}.{name}" if owner.path else name
                put(_Module(path, child) if isinstance(child, torch.nn.Module) else _attribute(child, path))
            else:
                raise GraphRefusal(f"forward() reads attribute {name!r} of something edgernn does not follow")
        elif kind == "prim::CallMethod":
            owner = ins[0]
            if not isinstance(owner, _Module):
                raise GraphRefusal(f"forward() calls method {node.s('name')!r} of something that is not a module")
            path, child = owner.path, owner.module
            method = node.s("name")
            if path in reader.by_path or _class(child) in _SKIP:
                result = reader.module(path, _class(child), ins[1:2], {str(i): v for i, v in enumerate(ins[2:])})
                if isinstance(reader.by_path.get(path), _RNN):
                    try:  # traced: the submodule returns what forward() used of the aten::lstm results
                        result = _traced_rnn_result(child, method, result[0])
                    except GraphRefusal:  # scripted: (output, h_n) or (output, (h_n, c_n))
                        if outs[0].type().kind() != "TupleType":
                            raise
                put(result)
            else:  # a container or plain module: follow its method's graph
                sub = _method_graph(child, method)
                sub_inputs = list(sub.inputs())
                inner = {sub_inputs[0].debugName(): owner}
                inner.update({v.debugName(): value for v, value in zip(sub_inputs[1:], ins[1:])})
                _script_block(sub.nodes(), inner, reader, depth + 1)
                returned = [_resolve(reader, inner[v.debugName()]) for v in sub.return_node().inputs()]
                put(returned[0] if len(returned) == 1 else tuple(returned))
        elif kind in ("prim::TupleUnpack", "prim::ListUnpack"):
            if not isinstance(ins[0], (tuple, list)) or len(ins[0]) != len(outs):
                raise GraphRefusal(f"forward() unpacks {_describe(ins[0])}")
            for out, value in zip(outs, ins[0]):
                values[out.debugName()] = value
        elif kind in ("prim::TupleConstruct", "prim::ListConstruct"):
            put(tuple(ins))
        elif kind == "prim::TupleIndex" or kind == "aten::__getitem__" and isinstance(ins[0], tuple):
            put(reader.index(ins[0], [("int", ins[1])]))
        elif kind == "prim::If":
            if not isinstance(ins[0], bool):
                raise GraphRefusal("forward() branches (if) on a value edgernn cannot know ahead of the data")
            block = list(node.blocks())[0 if ins[0] else 1]
            _script_block(block.nodes(), values, reader, depth + 1)
            for out, v in zip(outs, block.returnNode().inputs()):
                values[out.debugName()] = _resolve(reader, values[v.debugName()])
        elif kind == "prim::CallFunction":
            if not isinstance(ins[0], _Function):
                raise GraphRefusal("forward() calls a function edgernn cannot identify")
            put(_apply(reader, ins[0].name, ins[1:], {}, False))
        elif kind in ("prim::NumToTensor", "aten::Int", "aten::ScalarImplicit"):
            put(ins[0])
        elif kind in _CONSTANT_OPS and all(isinstance(v, (int, float, str, bool, type(None))) for v in ins):
            put(_CONSTANT_OPS[kind](*ins))  # arithmetic on attributes and constants (-self.pad, mode == "last")
        elif kind == "prim::RaiseException":
            raise GraphRefusal("forward() raises an exception on a path edgernn would take")
        elif kind.startswith("aten::"):
            put(_script_aten(reader, kind[len("aten::"):], ins))
        else:
            raise GraphRefusal(f"forward() does {kind}, which edgernn cannot represent")
    return values


def _script_aten(reader: _Reader, name: str, ins: list):
    """An ``aten::`` node of a TorchScript graph, its positional arguments as the schema has them:
    ``slice``/``select`` gathered into one index (:class:`_Slice`), the rest as :func:`_apply` reads
    the same calls from torch.fx."""
    if name == "slice":  # slice(x, dim, start, end, step)
        x, dim, start, stop, step = ins
        return _Slice.add(reader, x, dim, ("slice", start, stop, step))
    if name == "select":  # select(x, dim, index)
        x, dim, index = ins
        return _Slice.add(reader, x, dim, ("int", index))
    return _apply(reader, name, ins, {}, False)


@dataclass(frozen=True)
class _Slice:
    """A TorchScript index in progress: ``aten::slice``/``aten::select`` index one dim at a time, so
    ``y[:, :, :-4]`` is three nodes; they are gathered here (``items`` per dim of ``base``) and read
    as one index where the result is used (:func:`_resolve`)."""

    base: object
    items: tuple

    @staticmethod
    def add(reader, x, dim, item):
        base, items = (x.base, list(x.items)) if isinstance(x, _Slice) else (x, [])
        if not isinstance(base, _T):
            raise GraphRefusal(f"forward() indexes {_describe(base)}")
        # dim counts the dims of the current result: the base's, less those a select removed
        kept = [i for i, it in enumerate(items) if it[0] == "slice"] + list(range(len(items), len(base.layout)))
        if not -len(kept) <= dim < len(kept):
            raise GraphRefusal(f"forward() indexes dim {dim} of a rank-{len(kept)} tensor")
        target = kept[dim]
        if target < len(items):
            if not _full(items[target]):
                raise GraphRefusal("forward() indexes one dim twice, which edgernn cannot follow")
            items[target] = item
        else:
            items += [("slice", None, None, None)] * (target - len(items)) + [item]
        return _Slice(base, tuple(items))


def _resolve(reader: _Reader, x):
    """A value, with a gathered TorchScript index applied."""
    if isinstance(x, _Slice):
        return reader.index(x.base, list(x.items)) if x.items else x.base
    return x


_CONSTANT_OPS = {
    "aten::eq": operator.eq, "aten::ne": operator.ne, "aten::lt": operator.lt, "aten::gt": operator.gt,
    "aten::le": operator.le, "aten::ge": operator.ge, "aten::neg": operator.neg, "aten::add": operator.add,
    "aten::sub": operator.sub, "aten::mul": operator.mul, "aten::floordiv": operator.floordiv,
    "aten::__not__": operator.not_, "aten::__is__": operator.is_, "aten::__isnot__": operator.is_not,
}


def _attribute(value, path: str):
    """A non-module attribute read by a scripted forward(): a plain constant (str, bool, number)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise GraphRefusal(f"forward() reads attribute {path!r} of type {type(value).__name__}, which edgernn does not "
                       "follow")


def _class(module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


def _method_graph(module, method: str):
    """The graph of a TorchScript module's method (``forward``, or an overload such as ``forward__0``)."""
    try:
        return module._c._get_method(method).graph
    except Exception as exc:  # noqa: BLE001
        raise GraphRefusal(f"forward() calls method {method!r}, whose graph cannot be read") from exc
