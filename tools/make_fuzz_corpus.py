"""Write the fuzzing seed corpus, tests/fuzz_corpus/: small valid model files the fuzzer mutates.

    python tools/make_fuzz_corpus.py      # needs keras (the test extra)

Seeded: the weights are the same on every run. The ``.ernn`` seeds are test_store's models (every op
and cell, masks, two inputs, a rank-2 input) and one graph of the ops around an RNN (``layers.ernn``) and a chain that streams through
padding and crops (``reshaping.ernn``);
the Keras seeds are small ``.keras`` (Keras 3, Sequential and functional with Masking and Bidirectional, and one of the layers that
move timesteps) and a legacy ``.h5``. Zip members get a fixed date so
a rerun rewrites the same archives. Inputs the fuzzer once found crashing are kept beside them as
``regression-*`` files and are not touched here.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz_corpus"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _fixed_dates(path: Path) -> None:
    """Rewrite a zip with every member dated 1980-01-01, so reruns give the same bytes."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in members:
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            archive.writestr(fixed, data)
    path.write_bytes(buffer.getvalue())


def ernn_seeds() -> None:
    import edgernn
    import test_store as models

    for name, spec in (("all_cells", models.all_cells_chain()), ("bidirectional", models.bidirectional("concat", True)),
                       ("encoder_decoder", models.encoder_decoder()),
                       ("repeat_vector", models.repeat_vector_from_vector())):
        path = CORPUS / f"{name}.ernn"
        edgernn.Model(spec).save(path)
        _fixed_dates(path)


def layers_seed() -> None:
    """The ops around an RNN (issue #16), in one graph: integer codes through an Embedding(mask_zero),
    a float sequence standardized, convolved and layer-normalized, joined, merged, into a masked GRU."""
    import numpy as np

    import edgernn
    from edgernn import ir

    rng = np.random.default_rng(16)

    def w(*shape):
        return ir.as_weight(rng.normal(size=shape))

    gru = ir.Recurrent(name="gru", cell="gru", units=2, input_size=3, kernel=w(3, 6), recurrent_kernel=w(2, 6))
    nodes = (
        ir.Node(ir.Embedding(name="emb", embeddings=w(5, 3), mask_zero=True), ("codes",), ("emb", "emb:mask")),
        ir.Node(ir.Standardize(name="std", mean=w(2), std=ir.as_weight(rng.uniform(0.5, 2, 2))), ("x",), ("std",)),
        ir.Node(ir.Conv1D(name="conv", kernel=w(3, 2, 1), padding="same"), ("std",), ("conv",)),
        ir.Node(ir.LayerNorm(name="ln", kind="layer", epsilon=1e-3, gamma=w(3), beta=w(3)), ("emb",), ("ln",)),
        ir.Node(ir.Concatenate(name="cat"), ("conv", "std"), ("cat",)),
        ir.Node(ir.Merge(name="add", mode="add"), ("ln", "cat"), ("add",)),
        ir.Node(gru, ("add",), ("gru",), mask="emb:mask"),
    )
    spec = ir.ModelSpec((ir.Input("codes", 4, rank=2, dtype="int"), ir.Input("x", 2, timesteps=4)), nodes, ("gru",))
    path = CORPUS / "layers.ernn"
    edgernn.Model(spec).save(path)
    _fixed_dates(path)


def reshaping_seed() -> None:
    """A chain that streams through the layers that move timesteps: zeros padded on the left, a
    valid Conv1D, a crop at both ends (its delay line), an LSTM."""
    import numpy as np

    import edgernn
    from edgernn import ir

    rng = np.random.default_rng(17)

    def w(*shape):
        return ir.as_weight(rng.normal(size=shape))

    lstm = ir.Recurrent(name="lstm", cell="lstm", units=2, input_size=3, kernel=w(3, 8), recurrent_kernel=w(2, 8),
                        return_sequences=True)
    nodes = (
        ir.Node(ir.Pad1D(name="pad", left=2), ("x",), ("pad",)),
        ir.Node(ir.Conv1D(name="conv", kernel=w(3, 2, 3), padding="valid"), ("pad",), ("conv",)),
        ir.Node(ir.Pad1D(name="crop", left=-1, right=-2), ("conv",), ("crop",)),
        ir.Node(lstm, ("crop",), ("lstm",)),
    )
    path = CORPUS / "reshaping.ernn"
    edgernn.Model(ir.ModelSpec((ir.Input("x", 2),), nodes, ("lstm",))).save(path)
    _fixed_dates(path)


def keras_seeds() -> None:
    import keras
    from keras import layers
    from test_keras_import import randomize, seq

    keras.utils.set_random_seed(0)
    path = CORPUS / "lstm_dense.keras"
    randomize(seq(layers.LSTM(3, name="lstm"), layers.Dense(2, name="head"), steps=4, features=2)).save(path)
    _fixed_dates(path)

    x = keras.Input((5, 2))
    m = layers.Masking(0.0)(x)
    h = layers.Bidirectional(layers.GRU(2, return_sequences=True, name="gru"), name="bi")(m)
    y = layers.Dense(1, activation="sigmoid", name="out")(layers.SimpleRNN(2, name="rnn")(h))
    path = CORPUS / "masked_bigru.keras"
    randomize(keras.Model(x, y), seed=1).save(path)
    _fixed_dates(path)

    randomize(seq(layers.GRU(2, name="gru", return_sequences=True), layers.Dense(1, name="out"), steps=3, features=2),
              seed=2).save(CORPUS / "gru_legacy.h5")

    path = CORPUS / "reshaping.keras"  # every layer that moves timesteps
    randomize(seq(layers.ZeroPadding1D((2, 1), name="pad"), layers.Cropping1D((1, 0), name="crop"),
                  layers.UpSampling1D(2, name="up"), layers.Reshape((-1, 2), name="same"), layers.Permute((2, 1), name="swap"),
                  layers.Reshape((4, 6), name="regroup"), layers.LSTM(2, name="lstm"), steps=4, features=2), seed=3).save(path)
    _fixed_dates(path)


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    ernn_seeds()
    layers_seed()
    reshaping_seed()
    keras_seeds()
    total = 0
    for path in sorted(CORPUS.iterdir()):
        total += path.stat().st_size
        print(f"{path.stat().st_size:8d}  {path.relative_to(ROOT)}")
    print(f"{total:8d}  total")


if __name__ == "__main__":
    main()
