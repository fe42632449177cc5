"""Model and Stream: what users hold. (Being built: predict runs on the float64 reference for now.)"""

from __future__ import annotations

import numpy as np

from . import graph, ir, reference
from .errors import InvalidInput


class Model:
    """A converted model: ``predict`` whole sequences, ``stream`` for stateful stepping."""

    def __init__(self, spec: ir.ModelSpec):
        self.spec = spec

    def predict(self, *inputs):
        arrays = [np.asarray(x, dtype=np.float64) for x in inputs]
        if len(arrays) != len(self.spec.inputs):
            raise InvalidInput(f"the model takes {len(self.spec.inputs)} inputs, got {len(arrays)}")
        outs = graph.execute(self.spec, arrays, reference)
        return outs[0] if len(outs) == 1 else outs
