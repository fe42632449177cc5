"""The recurrent nodes: ONNX ``LSTM``, ``GRU`` and ``RNN`` -> :class:`~edgernn.ir.Recurrent` layers
(one per direction), their outputs ``Y``, ``Y_h``, ``Y_c`` as data tensors in ONNX's layouts.

Operator mapping (ONNX spec -> IR layout in :mod:`edgernn.ir`):

* ``W`` ``(dirs, gates * H, in)`` and ``R`` ``(dirs, gates * H, H)`` are transposed to
  ``(in, gates * H)``/``(H, gates * H)``. LSTM gate blocks i, o, f, c are reordered to the IR's
  i, f, c, o; GRU's z, r, h are the IR's order. ``B`` = ``[Wb, Rb]``: LSTM and RNN add both
  outside any gate product, so ``bias = Wb + Rb``; GRU with ``linear_before_reset=1`` ->
  ``reset_after=True``, ``bias = Wb``, ``recurrent_bias = Rb`` (``Rbh`` sits inside
  ``r * (...)``); with ``linear_before_reset=0`` -> ``reset_after=False``, ``bias = Wb + Rb``.
* ``P`` (peepholes, rows i, o, f) -> ``peephole`` rows i, f, o. ``clip`` -> ``cell_clip``.
* ``activations``: Sigmoid, Tanh, Relu, Softsign, Softplus, Elu(1), LeakyRelu(0.2),
  HardSigmoid(0.2, 0.5) -> ``hard_sigmoid_keras2``, HardSigmoid(1/6, 0.5) -> ``hard_sigmoid``,
  Affine(1, 0) -> linear, ScaledTanh(1, 1) -> tanh; any other function or parameter is refused
  by name. ``activation_alpha``/``activation_beta`` are consumed in order by the functions that
  take them, the spec's defaults filling in (as onnxruntime does). An LSTM's g and h must agree.
* ``direction``: forward; reverse (``go_backwards``; its ``Y`` in time order is computed as a
  Bidirectional whose forward half has zero weights, exactly zero, merged by sum);
  bidirectional -> ``ir.Bidirectional`` (concat).
* ``sequence_lens``: ignored when it is a constant equal to the (fixed) sequence length,
  otherwise refused; ``initial_h``/``initial_c``: zeros (``ConstantOfShape``, zero initializers)
  are the default state; a graph input or another node's ``Y_h``/``Y_c`` becomes the layer's
  initial state (unidirectional nodes); non-zero constants are refused (make them graph inputs).
* ``input_forget=1`` is refused.
"""

from __future__ import annotations

import numpy as np

from ... import ir
from ...errors import InvalidModelFile
from .activations import _RNN_FUNCTIONS, _rnn_activation
from .expressions import _BiE, _Rec, _RecE, _RevSeqE
from .graph import _clean_name
from .values import _Const, _Data, _Fill, _Refuse, _Stack, _Sym


class _RecurrentOps:
    """LSTM, GRU, RNN (a mixin of :class:`~.converter._Converter`)."""

    def _op_LSTM(self, node, inputs, attrs, where):
        return self._recurrent(node, inputs, attrs, where, "lstm")

    def _op_GRU(self, node, inputs, attrs, where):
        return self._recurrent(node, inputs, attrs, where, "gru")

    def _op_RNN(self, node, inputs, attrs, where):
        return self._recurrent(node, inputs, attrs, where, "simple")

    def _recurrent(self, node, inputs, attrs, where, cell):
        inputs = list(inputs) + [None] * (8 - len(inputs))
        x, w, r, b, seq_lens, h0, c0, p = inputs[:8]
        gates = ir.CELL_GATES[cell]
        problems = []
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: X must be a data tensor")
        for what, value in (("W", w), ("R", r), ("B", b), ("P", p)):
            if value is not None and not isinstance(value, _Const):
                raise _Refuse(f"{where}: {what} must be an initializer (a constant)")
        w, r = np.asarray(w.value, np.float64), np.asarray(r.value, np.float64)
        if w.ndim != 3 or r.ndim != 3:
            raise InvalidModelFile(f"{self.label}: {where}: W and R must be 3-D")
        dirs = w.shape[0]
        hidden = int(attrs.get("hidden_size", r.shape[-1]))
        direction = attrs.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise _Refuse(f"{where}: direction {direction!r}")
        if dirs != (2 if direction == "bidirectional" else 1):
            raise InvalidModelFile(f"{self.label}: {where}: W has {dirs} directions for direction={direction!r}")
        input_size = w.shape[2]
        if w.shape != (dirs, gates * hidden, input_size) or r.shape != (dirs, gates * hidden, hidden):
            raise InvalidModelFile(f"{self.label}: {where}: W {w.shape} / R {r.shape} do not fit hidden_size={hidden}")
        layout = attrs.get("layout", 0)
        if attrs.get("input_forget", 0):
            problems.append(f"{where}: input_forget=1 (coupled input and forget gates) is not supported")
        clip = attrs.get("clip")
        # X: (T, batch, in) for layout 0, (batch, T, in) for layout 1.
        order = ("T", "B") if layout == 0 else ("B", "T")
        if len(x.axes) != 3:
            raise _Refuse(f"{where}: X of rank {len(x.axes)}")
        self.require(x.axes[0], order[0], where + " X")
        self.require(x.axes[1], order[1], where + " X")
        self._feature_axis(x, 2, where + " X")
        if x.expr.features != input_size:
            raise _Refuse(f"{where}: X has {x.expr.features} features, W expects {input_size}")
        # sequence_lens: only a constant of full lengths, which changes nothing.
        if seq_lens is not None:
            t_axis = x.axes[0 if layout == 0 else 1]
            steps = t_axis.size if isinstance(t_axis, _Sym) else None
            lens = np.asarray(seq_lens.value) if isinstance(seq_lens, _Const) else None
            if lens is not None and lens.ndim == 1:
                self.batch_size = int(lens.size)
            if lens is None or steps is None or not np.all(lens == steps):
                problems.append(f"{where}: sequence_lens is supported only as a constant equal to the fixed sequence "
                                "length (every sequence full); pad-free variable lengths are not supported")
        # Activations per direction.
        count = {"lstm": 3, "gru": 2, "simple": 1}[cell]
        defaults = {"lstm": ["Sigmoid", "Tanh", "Tanh"], "gru": ["Sigmoid", "Tanh"], "simple": ["Tanh"]}[cell]
        names = list(attrs.get("activations", defaults * dirs))
        if len(names) == count and dirs == 2:
            names = names * 2
        if len(names) != count * dirs:
            raise InvalidModelFile(f"{self.label}: {where}: {len(names)} activations for {dirs} direction(s)")
        alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
        resolved = []
        for name in names:
            spec = _RNN_FUNCTIONS.get(name.lower())
            if spec is None:
                problems.append(f"{where}: activation {name} is not supported")
                resolved.append(None)
                continue
            n_alpha, n_beta, d_alpha, d_beta = spec
            alpha = alphas.pop(0) if n_alpha and alphas else d_alpha
            beta = betas.pop(0) if n_beta and betas else d_beta
            ir_name = _rnn_activation(name, alpha, beta)
            if ir_name is None:
                params = ", ".join(f"{k}={v}" for k, v in (("alpha", alpha), ("beta", beta)) if v is not None)
                problems.append(f"{where}: activation {name}({params}) is not an edgernn activation")
            resolved.append(ir_name)
        # Biases and peepholes.
        bias = np.asarray(b.value, np.float64) if b is not None else None
        if bias is not None and bias.shape != (dirs, 2 * gates * hidden):
            raise InvalidModelFile(f"{self.label}: {where}: B has shape {bias.shape}")
        peep = None
        if p is not None:
            peep = np.asarray(p.value, np.float64)
            if cell != "lstm" or peep.shape != (dirs, 3 * hidden):
                raise InvalidModelFile(f"{self.label}: {where}: P has shape {peep.shape}")
        # Initial states.
        initial = []
        for what, value in (("initial_h", h0), ("initial_c", c0)):
            if what == "initial_c" and cell != "lstm":
                continue
            initial.append(self._initial_state(value, what, dirs, hidden, layout, where))
        if any(s is not None for s in initial) and dirs == 2:
            problems.append(f"{where}: initial states of a bidirectional node are supported only as zeros")
        if cell == "lstm" and (initial[0] is None) != (initial[1] is None):
            problems.append(f"{where}: an LSTM with initial_h but not initial_c (or the reverse) is not supported; "
                            "give both as graph inputs")
        if problems:
            raise _Refuse("; ".join(problems))
        initial_exprs = tuple(s.expr for s in initial) if initial and initial[0] is not None else ()
        base = node.name or node.output[0]
        recs = []
        for d in range(dirs):
            reverse = direction == "reverse" or d == 1
            layer = self._layer(cell, w[d], r[d], None if bias is None else bias[d], None if peep is None else peep[d],
                                hidden, input_size, resolved[d * count:(d + 1) * count],
                                attrs.get("linear_before_reset", 0), clip, reverse, base, where)
            name = base if dirs == 1 else f"{base}_{'backward' if d else 'forward'}"
            recs.append(_Rec(name, layer, x.expr, initial_exprs, reverse))
        if dirs == 2:
            recs[0].pair = recs[1]
        # Outputs in ONNX layouts: Y (T, dirs, B, H) / (B, T, dirs, H); Y_h, Y_c (dirs, B, H) / (B, dirs, H).
        outputs = []
        seq_axes = ("T", "D", "B", "F") if layout == 0 else ("B", "T", "D", "F")
        # Y's time axis is X's (after a Conv or pooling, a token of its own static length).
        time = x.axes[0 if layout == 0 else 1]
        seq_axes = tuple(time if a == "T" and isinstance(time, _Sym) else a for a in seq_axes)
        state_axes = ("D", "B", "F") if layout == 0 else ("B", "D", "F")
        if dirs == 1:
            expr = _RevSeqE(recs[0]) if recs[0].reverse else _RecE(recs[0], "seq")
            outputs.append(_Data(expr, tuple("U" if a == "D" else ("F", 0, 1) if a == "F" else a for a in seq_axes),
                                 (hidden,)))
        else:
            outputs.append(_Data(_BiE(recs[0], recs[1], "seq"),
                                 tuple(("F", 0, 1) if a == "D" else ("F", 1, 2) if a == "F" else a for a in seq_axes),
                                 (2, hidden)))
        for what in ("h", "c") if cell == "lstm" else ("h",):
            single = tuple("U" if a == "D" else ("F", 0, 1) if a == "F" else a for a in state_axes)
            if dirs == 1:
                outputs.append(_Data(_RecE(recs[0], what), single, (hidden,)))
            elif what == "h" and not initial_exprs:
                outputs.append(_Data(_BiE(recs[0], recs[1], "last"),
                                     tuple(("F", 0, 1) if a == "D" else ("F", 1, 2) if a == "F" else a
                                           for a in state_axes), (2, hidden)))
            else:
                outputs.append(_Stack(tuple(_Data(_RecE(rec, what), single, (hidden,)) for rec in recs),
                                      state_axes.index("D")))
        return outputs

    def _initial_state(self, value, what, dirs, hidden, layout, where):
        """None for an absent or zero state, else the ``_Data`` of a (batch, hidden) state."""
        if value is None:
            return None
        if isinstance(value, _Fill):
            if value.value == 0.0:
                return None
            raise _Refuse(f"{where}: {what} is a non-zero constant; make it a graph input")
        if isinstance(value, _Const):
            if not np.any(value.value):
                if value.value.ndim == 3:  # (dirs, batch, H) or, layout 1, (batch, dirs, H)
                    self.batch_size = int(value.value.shape[1 if layout == 0 else 0])
                return None
            raise _Refuse(f"{where}: {what} is a non-zero constant initializer; edgernn takes initial states only "
                          "as graph inputs (or zeros)")
        if not isinstance(value, _Data):
            raise _Refuse(f"{where}: {what} is not a tensor edgernn can follow")
        if dirs != 1 or len(value.axes) != 3:
            raise _Refuse(f"{where}: {what} of a bidirectional node")
        d_axis, b_axis = (0, 1) if layout == 0 else (1, 0)
        self.require(value.axes[d_axis], "U", where + f" {what}")
        self.require(value.axes[b_axis], "B", where + f" {what}")
        self._feature_axis(value, 2, where + f" {what}")
        if value.expr.features != hidden:
            raise _Refuse(f"{where}: {what} has {value.expr.features} features, hidden_size is {hidden}")
        return value

    def _layer(self, cell, w, r, b, p, hidden, input_size, activations, linear_before_reset, clip, reverse, base,
               where) -> ir.Recurrent:
        h = hidden
        if cell == "lstm":
            # ONNX gate blocks i, o, f, c -> IR i, f, c, o.
            order = [0, 2, 3, 1]
        else:
            order = list(range(ir.CELL_GATES[cell]))  # GRU z, r, h = IR order; RNN one block

        def blocks(a):
            return np.concatenate([a[k * h:(k + 1) * h] for k in order], axis=0)

        kernel = blocks(w).T  # (gates*H, in) -> (in, gates*H)
        recurrent = blocks(r).T
        bias = recurrent_bias = None
        reset_after = True
        if cell == "gru":
            reset_after = bool(linear_before_reset)
        if b is not None:
            wb, rb = blocks(b[:len(b) // 2]), blocks(b[len(b) // 2:])
            if cell == "gru" and reset_after:
                bias, recurrent_bias = wb, rb  # Rbh sits inside r * (R_h h + Rbh): kept apart
            else:
                bias = wb + rb  # added outside every gate product
        elif cell == "gru" and reset_after:
            recurrent_bias = None
        peephole = None
        if p is not None:
            peephole = np.stack([p[0:h], p[2 * h:3 * h], p[h:2 * h]])  # ONNX i, o, f -> IR i, f, o
        if cell == "lstm":
            f, g, hh = activations
            if g != hh:
                raise _Refuse(f"{where}: LSTM activations g={g} and h={hh} differ; edgernn uses one for both")
            recurrent_activation, activation = f, g
        elif cell == "gru":
            recurrent_activation, activation = activations
        else:
            recurrent_activation, activation = "sigmoid", activations[0]
        return ir.Recurrent(
            name=_clean_name(base), cell=cell, units=h, input_size=input_size, kernel=ir.as_weight(kernel),
            recurrent_kernel=ir.as_weight(recurrent), bias=None if bias is None else ir.as_weight(bias),
            recurrent_bias=None if recurrent_bias is None else ir.as_weight(recurrent_bias),
            activation=activation, recurrent_activation=recurrent_activation, reset_after=reset_after,
            go_backwards=reverse, peephole=None if peephole is None else ir.as_weight(peephole),
            cell_clip=None if clip is None else float(clip))
