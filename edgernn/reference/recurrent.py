"""A recurrent layer over a whole sequence (float64 reference), with Keras's sequence semantics."""

from __future__ import annotations

import numpy as np

from .gru import gru_step
from .lstm import lstm_step
from .simple_rnn import simple_step


def cell_step(layer, x, states):
    """One step of ``layer``'s cell: returns the new states tuple (the output is ``states[0]``)."""
    if layer.cell == "lstm":
        return lstm_step(layer, x, *states)
    if layer.cell == "gru":
        return gru_step(layer, x, *states)
    return simple_step(layer, x, *states)


def recurrent_sequence(layer, x, mask=None, initial_state=None):
    """Run ``layer`` over ``x`` (B, T, input_size) from ``initial_state`` (zeros if None).

    Returns ``(y, states)``: ``y`` is (B, T, output_size) when ``return_sequences`` else
    (B, output_size); ``states`` the final states (sizes ``layer.state_sizes``).

    Keras semantics reproduced here:

    * ``go_backwards``: the input (and mask) is read from the last step to the first, and the
      returned sequence stays in that processing order (Keras does not flip it back).
    * ``mask`` (B, T) bool, True = real step: a masked step keeps the states; its output is the
      previous step's output (zeros before the first one) or zeros if ``zero_output_for_mask``.
    """
    x = np.asarray(x, dtype=np.float64)
    batch, steps, _ = x.shape
    if initial_state is None:
        states = tuple(np.zeros((batch, size)) for size in layer.state_sizes)
    else:
        states = tuple(np.asarray(s, dtype=np.float64) for s in initial_state)
    if layer.go_backwards:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    previous = np.zeros((batch, layer.output_size))
    outputs = []
    for t in range(steps):
        new_states = cell_step(layer, x[:, t], states)
        out = new_states[0]
        if mask is not None:
            keep = np.asarray(mask[:, t], dtype=bool)[:, None]
            new_states = tuple(np.where(keep, n, s) for n, s in zip(new_states, states))
            out = np.where(keep, out, 0.0 if layer.zero_output_for_mask else previous)
        states, previous = new_states, out
        outputs.append(out)
    if layer.return_sequences:
        y = np.stack(outputs, axis=1) if outputs else np.zeros((batch, 0, layer.output_size))
    else:
        y = outputs[-1] if outputs else np.zeros((batch, layer.output_size))
    return y, states
