"""The recurrent layers: LSTM, GRU, SimpleRNN, RNN(LSTMCell/GRUCell/SimpleRNNCell) and
Bidirectional, their settings checked and their weights put in the IR's layout.

Weight layouts: Keras's kernel ``(input_size, gates * units)`` with gate blocks i, f, c, o (LSTM)
or z, r, h (GRU) *is* the IR layout, so kernels are copied as they are. The one reshuffle is the
GRU bias with ``reset_after=True``: Keras stores ``(2, 3 * units)``, row 0 added to the input
projection and row 1 to the recurrent projection; the IR keeps them as ``bias`` and
``recurrent_bias``.
"""

from __future__ import annotations

from typing import Optional

from ... import ir
from ...errors import InvalidModelFile
from .graph import _Call, _Data, _positive_int, _Unusable

_RNN_LAYERS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple"}
_RNN_CELLS = {"LSTMCell": "lstm", "GRUCell": "gru", "SimpleRNNCell": "simple"}


class _RecurrentHandlers:
    """Handlers of LSTM, GRU, SimpleRNN, RNN(cell) and Bidirectional. A mixin of ``_Converter``:
    uses its ``nodes``, ``invalid``, ``_data_input``, ``_op_name``, ``_custom``, ``_fetch``,
    ``_shape``, ``_activation`` and ``_explicit_mask``."""

    def _rnn_settings(self, entry, where, problems) -> Optional[dict]:
        """The IR-relevant settings of an LSTM/GRU/SimpleRNN (or RNN(cell)) config, checked."""
        cls, cfg = entry["class_name"], entry["config"]
        custom = self._custom(entry)
        if custom:
            problems.append(f"{where}: wraps {custom}")
            return None
        if cls == "RNN":
            # keras.layers.RNN(LSTMCell(...)): the cell's config holds units and activations.
            cell = cfg.get("cell")
            if isinstance(cell, list) or not isinstance(cell, dict) or cell.get("class_name") not in _RNN_CELLS:
                kind = cell.get("class_name") if isinstance(cell, dict) else "stacked cells"
                problems.append(f"{where}: RNN with cell {kind!r} is not supported")
                return None
            if self._custom(cell):
                problems.append(f"{where}: wraps {self._custom(cell)}")
                return None
            kind = _RNN_CELLS[cell["class_name"]]
            cell_cfg = dict(cell.get("config") or {})
        elif cls in _RNN_LAYERS:
            kind, cell_cfg = _RNN_LAYERS[cls], cfg
        else:
            problems.append(f"{where}: wraps {cls} layers, which are not supported")
            return None
        units = _positive_int("units", cell_cfg.get("units"))
        if cfg.get("time_major"):
            problems.append(f"{where}: time_major=True is not supported")
        if cfg.get("num_constants"):
            problems.append(f"{where}: RNN constants are not supported")
        settings = {
            "cell": kind,
            "units": units,
            "use_bias": bool(cell_cfg.get("use_bias", True)),
            "activation": self._activation(cell_cfg.get("activation", "tanh"), where, problems),
            "recurrent_activation": "sigmoid",
            # GRU: None = not recorded (very old files): decided by the bias shape below.
            "reset_after": cell_cfg.get("reset_after") if kind == "gru" else True,
            "return_sequences": bool(cfg.get("return_sequences", False)),
            "return_state": bool(cfg.get("return_state", False)),
            "go_backwards": bool(cfg.get("go_backwards", False)),
            # Keras 2 writes zero_output_for_mask only when True.
            "zero_output_for_mask": bool(cfg.get("zero_output_for_mask", False)),
        }
        if kind != "simple":
            settings["recurrent_activation"] = self._activation(
                cell_cfg.get("recurrent_activation", "sigmoid"), where, problems
            )
        # Not recorded anywhere in the IR, on purpose: stateful (state carried between predict
        # calls; the converted model's Stream does that for any batch size), unroll (same math),
        # dropout/recurrent_dropout (identity at inference), implementation/use_cudnn (same math).
        return settings

    def _recurrent_op(self, layer: str, part: tuple, s: dict, input_size: int, op_name: str, where: str):
        """ir.Recurrent with the weights of ``layer``/``part`` in the canonical (Keras) layout."""
        gates, units = ir.CELL_GATES[s["cell"]], s["units"]
        roles = ["kernel", "recurrent_kernel"] + (["bias"] if s["use_bias"] else [])
        w = self._fetch(layer, part, roles, where)
        if w is None:
            return None
        ok = self._shape(where, "kernel", w["kernel"], (input_size, gates * units))
        ok = self._shape(where, "recurrent_kernel", w["recurrent_kernel"], (units, gates * units)) and ok
        bias = recurrent_bias = None
        reset_after = s["reset_after"]
        if s["use_bias"]:
            b = w["bias"]
            if s["cell"] == "gru" and reset_after is None:
                reset_after = b.ndim == 2  # (2, 3H) exists only with reset_after=True
            if s["cell"] == "gru" and reset_after:
                # Layout fix: Keras GRU(reset_after=True) stores one (2, 3H) bias; row 0 is added to
                # the input projection x W, row 1 to the recurrent projection h U (inside r * (...)
                # for the candidate), so they are kept apart as IR bias and recurrent_bias.
                if self._shape(where, "bias", b, (2, gates * units)) and ok:
                    bias, recurrent_bias = ir.as_weight(b[0]), ir.as_weight(b[1])
                else:
                    ok = False
            else:
                ok = self._shape(where, "bias", b, (gates * units,)) and ok
                bias = ir.as_weight(b)
        if not ok:
            return None
        try:
            return ir.Recurrent(
                name=op_name,
                cell=s["cell"],
                units=units,
                input_size=input_size,
                # No reshuffle: Keras's (input_size, gates * units) kernel with gate blocks
                # i,f,c,o / z,r,h is the IR layout.
                kernel=ir.as_weight(w["kernel"]),
                recurrent_kernel=ir.as_weight(w["recurrent_kernel"]),
                bias=bias,
                recurrent_bias=recurrent_bias,
                activation=s["activation"],
                recurrent_activation=s["recurrent_activation"],
                reset_after=True if reset_after is None else bool(reset_after),
                return_sequences=s["return_sequences"],
                go_backwards=s["go_backwards"],
                zero_output_for_mask=s["zero_output_for_mask"],
            )
        except InvalidModelFile as exc:
            self.invalid.append(f"{where}: {exc}")
            return None

    def _recurrent(self, entry, call, k, where, problems, dry):
        """LSTM / GRU / SimpleRNN / RNN(cell): outputs [y] or, with return_state, [y, *states]."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        s = self._rnn_settings(entry, where, problems)
        if dry or s is None or problems:
            return None
        call = _split_states(call)
        x = self._data_input(call, where, problems, ranks=(3,))
        if x is None:
            return None
        n_states = 2 if s["cell"] == "lstm" else 1
        states = []
        if call.initial_state:
            for v in call.initial_state:
                if not isinstance(v, _Data) or v.rank != 2 or v.features != s["units"]:
                    problems.append(f"{where}: initial_state must be {n_states} tensor(s) of (batch, {s['units']})")
                    return None
                states.append(v.name)
            if len(states) != n_states:
                problems.append(f"{where}: initial_state has {len(states)} tensors, the cell has {n_states} states")
                return None
        mask = self._explicit_mask(call, x, where, problems)
        if problems:
            return None
        op = self._recurrent_op(name, ("cell",), s, x.features, self._op_name(name, k), where)
        if op is None:
            return None
        outs = (op.name,) + tuple(f"{op.name}:{i}" for i in range(1, n_states + 1) if s["return_state"])
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=outs, mask=mask, initial_state=tuple(states)))
        # Keras RNN.compute_mask: the mask passes on with return_sequences, is consumed without;
        # the states never carry one.
        y = _Data(op.name, 3 if s["return_sequences"] else 2, s["units"], x.timesteps if s["return_sequences"] else None,
                  mask if s["return_sequences"] else None)
        return [y] + [_Data(n, 2, s["units"]) for n in outs[1:]]

    def _bidirectional(self, entry, call, k, where, problems, dry):
        """Bidirectional(RNN) -> ir.Bidirectional: forward and backward layers from the config
        (Keras builds the backward one as a copy with go_backwards flipped unless given)."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        merge = cfg.get("merge_mode", "concat")
        if merge not in ir.MERGE_MODES:
            problems.append(f"{where}: merge_mode {merge!r} is not supported (only {', '.join(ir.MERGE_MODES)})")
        fwd_entry, bwd_entry = cfg.get("layer"), cfg.get("backward_layer")
        if not isinstance(fwd_entry, dict) or not isinstance(fwd_entry.get("config"), dict):
            raise InvalidModelFile("no wrapped layer in the config")
        fwd = self._rnn_settings(fwd_entry, where, problems)
        if isinstance(bwd_entry, dict) and isinstance(bwd_entry.get("config"), dict):
            bwd = self._rnn_settings(bwd_entry, where, problems)
        else:
            bwd = None if fwd is None else dict(fwd, go_backwards=not fwd["go_backwards"])
        if fwd is None or bwd is None:
            return None
        if fwd["go_backwards"] or not bwd["go_backwards"]:
            problems.append(f"{where}: a forward layer with go_backwards=True is not supported")
        for key in ("cell", "units", "return_sequences", "return_state"):
            if fwd[key] != bwd[key]:
                problems.append(f"{where}: forward and backward layers differ in {key}")
        call = _split_states(call)
        if call.initial_state:
            problems.append(f"{where}: initial_state for a Bidirectional layer is not supported")
        if dry or problems:
            return None
        x = self._data_input(call, where, problems, ranks=(3,))
        if x is None:
            return None
        mask = self._explicit_mask(call, x, where, problems)
        if problems:
            return None
        # keras Bidirectional.__init__ forces zero_output_for_mask = return_sequences on both layers.
        for s in (fwd, bwd):
            s["zero_output_for_mask"] = s["return_sequences"]
        op_name = self._op_name(name, k)
        f_op = self._recurrent_op(name, ("forward_layer", "cell"), fwd, x.features, f"{op_name}/forward", where)
        b_op = self._recurrent_op(name, ("backward_layer", "cell"), bwd, x.features, f"{op_name}/backward", where)
        if f_op is None or b_op is None:
            return None
        try:
            op = ir.Bidirectional(name=op_name, forward=f_op, backward=b_op, merge_mode=merge)
        except InvalidModelFile as exc:
            self.invalid.append(f"{where}: {exc}")
            return None
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,), mask=mask))
        seq = fwd["return_sequences"]
        y = _Data(op.name, 3 if seq else 2, op.output_size, x.timesteps if seq else None, mask if seq else None)
        # With return_state Keras returns [y, forward states..., backward states...]; the IR op
        # makes y only, so the states may be left unused but not read.
        states = [_Unusable(f"{where}: the states of a Bidirectional layer with return_state")] * (
            4 if fwd["cell"] == "lstm" else 2
        )
        return [y] + (states if fwd["return_state"] else [])


def _split_states(call: _Call) -> _Call:
    """RNN calls: inputs after the sequence are initial states (Keras 2 lists them as extra
    inbound tensors; Keras 3 when passed positionally)."""
    if len(call.inputs) > 1 and not call.initial_state:
        return _Call(call.inputs[:1], call.inputs[1:], call.mask)
    return call
