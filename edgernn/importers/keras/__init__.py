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
* ``conv``: Conv1D, the 1-D and global poolings, BatchNormalization (folded): predict; streams where causal.
* ``layers``: Dense, TimeDistributed, RepeatVector and the layers that are the identity at inference.
* ``merge``: Add, Subtract, Multiply, Average, Maximum, Minimum and Concatenate: multi-branch graphs.
* ``normalization``: LayerNormalization, RMSNormalization and the preprocessing Normalization.
* ``reshape``: ZeroPadding1D, Cropping1D, UpSampling1D, Reshape and Permute on (batch, T, C).
* ``masking``: the Masking layer, Keras 3's not_equal/any mask ops, and the mask an RNN call uses.
* ``recurrent``: LSTM, GRU, SimpleRNN, RNN(cell) and Bidirectional, and their weight reshuffles.
* ``run``: :func:`run_source`, the source model run by Keras itself, for verification.

The converter is one class, ``_Converter``, made of its core (``converter``) and one mixin per layer
family (``activations``, ``conv``, ``layers``, ``masking``, ``merge``, ``normalization``, ``recurrent``,
``reshape``). Mixins rather than handler functions taking the converter, because the handlers use the
core's state and helpers throughout (``self.nodes``, ``self._fetch``, ``self._data_input``, ``self._op_name``) and call each other
across families (TimeDistributed builds on Dense's ``_dense_op``, every layer maps activations with
``_activation``, the RNN handlers ask the masks for ``_explicit_mask``): as methods they move
unchanged, the handler table in ``converter`` still maps each class name to a method with one
signature, and each family reads in a module of its own.

The bounds on what a file can make us read (``_MAX_*``) live in the modules that apply them,
``container`` and ``weights``, and a test that lowers one sets it there.
"""

from __future__ import annotations

from . import container, weights  # noqa: F401 -- where the bounds live (tests lower them there)
from .container import _read_container  # noqa: F401 -- the plain reader, for tests and tools
from .isolated import _read_isolated  # noqa: F401 -- the time-limited reader, for tests
from .load import from_keras_model, load_keras_file
from .run import run_source

__all__ = ["load_keras_file", "from_keras_model", "run_source"]

