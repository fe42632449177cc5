"""Keras importer: ``.keras`` and ``.h5`` files (Keras 3 and Keras 2 / tf-keras) -> :class:`~edgernn.ir.ModelSpec`.

Files are read with ``zipfile``, ``json`` and ``h5py`` only: TensorFlow and Keras are never imported
to convert a file (only lazily by :func:`from_keras_model`, which calls nothing but ``model.save``,
and by :func:`run_source`, which runs the source model for verification), no layer is ever
deserialized, no Python code stored in a file (Lambda bytecode, custom objects) is ever run.

A file is read into plain values (config dict, metadata, numpy arrays) in a time-limited child
process, then its config is walked layer by layer into IR nodes. Every unsupported layer or option is
gathered first and refused at the end with one :class:`~edgernn.errors.UnsupportedModel` whose
``problems`` name each layer; a malformed file raises :class:`~edgernn.errors.InvalidModelFile`
naming the file and the problem.

Modules, one idea each:

* ``load``: the entry points :func:`load_keras_file` and :func:`from_keras_model` (read, then convert).
* ``container``: what a ``.keras`` zip and a legacy ``.h5`` hold, read into plain values within bounds.
* ``isolated``: that read in a child process killed after a time limit.
* ``answer``: what may cross the pipe from that child: an allow-list and its restricted unpickler.
* ``weights``: the ``_Weights`` classes, every weight array of a file found again by layer.
* ``graph``: the values that flow between layers, and how a functional config writes its edges.
* ``converter``: the config walk (``_Converter``): inputs, layer order, the checks every layer gets.
* ``activations``: Keras activations to IR names; the Activation, ReLU, LeakyReLU, ELU, Softmax layers.
* ``layers``: Dense, TimeDistributed, RepeatVector and the layers that are the identity at inference.
* ``masking``: the Masking layer, Keras 3's not_equal/any mask ops, and the mask an RNN call uses.
* ``recurrent``: LSTM, GRU, SimpleRNN, RNN(cell) and Bidirectional, and their weight reshuffles.
* ``run``: :func:`run_source`, the source model run by Keras itself, for verification.

The converter is one class, ``_Converter``, made of its core (``converter``) and one mixin per layer
family (``activations``, ``layers``, ``masking``, ``recurrent``). Mixins rather than handler
functions taking the converter, because the handlers use the core's state and helpers throughout
(``self.nodes``, ``self._fetch``, ``self._data_input``, ``self._op_name``) and call each other
across families (TimeDistributed builds on Dense's ``_dense_op``, every layer maps activations with
``_activation``, the RNN handlers ask the masks for ``_explicit_mask``): as methods they move
unchanged, the handler table in ``converter`` still maps each class name to a method with one
signature, and each family reads in a module of its own.

The bounds on what a file can make us read (``_MAX_*``, kept in ``container`` and ``weights``),
:data:`~edgernn.importers.keras.isolated.HDF5_TIMEOUT` and the readers ``_read_container`` and
``_read_isolated`` are re-exported here, and the tests set them here. So that a value set here is
the one in force, as when the importer was one module, setting a name on this package sets it too
in each of its modules that holds that name (``_Package``). The modules cannot look such names up
here instead: a module of the package importing the package would be an import cycle.
"""

from __future__ import annotations

import sys
import types

from . import activations, answer, container, converter, graph, isolated, layers, load, masking, recurrent, run, weights
from .container import _MAX_JSON_BYTES, _MAX_MEMBERS, _MAX_WEIGHTS_BYTES, _read_container  # noqa: F401
from .isolated import HDF5_TIMEOUT, _read_isolated  # noqa: F401
from .load import from_keras_model, load_keras_file
from .run import run_source
from .weights import _MAX_ARRAY_BYTES, _MAX_ARRAYS_BYTES  # noqa: F401

__all__ = ["load_keras_file", "from_keras_model", "run_source"]

_MODULES = (
    activations, answer, container, converter, graph, isolated, layers, load, masking, recurrent, run, weights,
)


class _Package(types.ModuleType):
    """This package: a name set on it is set in each of its modules that holds that name."""

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if not name.startswith("__"):
            for module in _MODULES:
                if name in vars(module):
                    setattr(module, name, value)


sys.modules[__name__].__class__ = _Package
