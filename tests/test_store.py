"""The ``.ernn`` file: round trips for every op, the header, and refusal of every malformed file.

Every refusal must be an :class:`edgernn.errors.InvalidModelFile` whose message names the file and
the problem; nothing in a file is ever unpickled or executed; a failed save leaves the old file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import edgernn
from edgernn import ir, store
from edgernn.errors import InvalidModelFile

F32 = np.float32


# -- models with every op -----------------------------------------------------------------------------------


def _recurrent(rng, name, cell, units, input_size, *, reset_after=True, bias=True, recurrent_bias=False, **flags):
    width = ir.CELL_GATES[cell] * units
    return ir.Recurrent(
        name, cell, units, input_size,
        kernel=ir.as_weight(rng.normal(0, 0.5, (input_size, width))),
        recurrent_kernel=ir.as_weight(rng.normal(0, 0.5, (units, width))),
        bias=ir.as_weight(rng.normal(0, 0.2, width)) if bias else None,
        recurrent_bias=ir.as_weight(rng.normal(0, 0.2, width)) if recurrent_bias else None,
        reset_after=reset_after, **flags,
    )


def _dense(rng, name, input_size, units, activation="linear", bias=True):
    return ir.Dense(name, ir.as_weight(rng.normal(0, 0.5, (input_size, units))),
                    ir.as_weight(rng.normal(0, 0.2, units)) if bias else None, activation)


SOURCE = {"format": "keras", "file": "model.keras", "framework_version": "3.10.0", "note": "ünïcode ✓"}


def all_cells_chain():
    """Masking -> LSTM -> GRU (reset_after, recurrent bias) -> GRU (v1, zero output) -> SimpleRNN -> Dense -> Activation."""
    rng = np.random.default_rng(0)
    nodes = (
        ir.Node(ir.Masking("masking", -1.5), ("x",), ("m", "mask")),
        ir.Node(_recurrent(rng, "lstm", "lstm", 6, 4, return_sequences=True, recurrent_activation="hard_sigmoid_keras2"),
                ("m",), ("a",), mask="mask"),
        ir.Node(_recurrent(rng, "gru", "gru", 5, 6, recurrent_bias=True, return_sequences=True), ("a",), ("b",), mask="mask"),
        ir.Node(_recurrent(rng, "gru_v1", "gru", 4, 5, reset_after=False, bias=False, return_sequences=True,
                           zero_output_for_mask=True, activation="softsign"), ("b",), ("c",), mask="mask"),
        ir.Node(_recurrent(rng, "simple", "simple", 3, 4, activation="relu"), ("c",), ("d",), mask="mask"),
        ir.Node(_dense(rng, "head", 3, 5, "softmax"), ("d",), ("e",)),
        ir.Node(ir.Activation("log", "log_softmax"), ("e",), ("y",)),
    )
    return ir.ModelSpec((ir.Input("x", 4, timesteps=7),), nodes, ("y",), dict(SOURCE))


def bidirectional(merge_mode, return_sequences):
    rng = np.random.default_rng(1)
    forward = _recurrent(rng, "bi_forward", "gru", 4, 3, return_sequences=return_sequences)
    backward = _recurrent(rng, "bi_backward", "gru", 4, 3, return_sequences=return_sequences, go_backwards=True)
    bi = ir.Bidirectional("bi", forward, backward, merge_mode)
    nodes = (
        ir.Node(ir.Masking("masking", 0.0), ("x",), ("m", "mask")),
        ir.Node(bi, ("m",), ("h",), mask="mask"),
        ir.Node(_dense(rng, "head", bi.output_size, 2, "sigmoid", bias=False), ("h",), ("y",)),
    )
    return ir.ModelSpec((ir.Input("x", 3),), nodes, ("y",), {"format": "test"})


def repeat_vector():
    rng = np.random.default_rng(2)
    nodes = (
        ir.Node(_recurrent(rng, "enc", "lstm", 5, 3), ("x",), ("e",)),
        ir.Node(ir.RepeatVector("repeat", 4), ("e",), ("r",)),
        ir.Node(_recurrent(rng, "dec", "simple", 3, 5, return_sequences=True, activation="tanh"), ("r",), ("d",)),
        ir.Node(_dense(rng, "out", 3, 3), ("d",), ("y",)),
    )
    return ir.ModelSpec((ir.Input("x", 3),), nodes, ("y",), {"format": "test"})


def repeat_vector_from_vector():
    rng = np.random.default_rng(3)
    nodes = (
        ir.Node(ir.RepeatVector("repeat", 6), ("v",), ("r",)),
        ir.Node(_recurrent(rng, "rnn", "gru", 4, 2, return_sequences=True), ("r",), ("y",)),
    )
    return ir.ModelSpec((ir.Input("v", 2, rank=2),), nodes, ("y",), {"format": "test"})


def encoder_decoder():
    """Two inputs; the decoder starts from the encoder's final (h, c); two outputs."""
    rng = np.random.default_rng(4)
    nodes = (
        ir.Node(_recurrent(rng, "encoder", "lstm", 6, 3), ("enc_in",), ("enc_out", "enc_h", "enc_c")),
        ir.Node(_recurrent(rng, "decoder", "lstm", 6, 2, return_sequences=True), ("dec_in",), ("dec_seq", "dec_h", "dec_c"),
                initial_state=("enc_h", "enc_c")),
        ir.Node(_dense(rng, "readout", 6, 2, "linear"), ("dec_seq",), ("y",)),
    )
    return ir.ModelSpec((ir.Input("enc_in", 3), ir.Input("dec_in", 2)), nodes, ("y", "dec_h"), dict(SOURCE))


def gru_encoder_decoder():
    rng = np.random.default_rng(5)
    nodes = (
        ir.Node(_recurrent(rng, "encoder", "gru", 4, 3, reset_after=False), ("a",), ("e", "h")),
        ir.Node(_recurrent(rng, "decoder", "gru", 4, 3, recurrent_bias=True, return_sequences=True),
                ("b",), ("y",), initial_state=("h",)),
    )
    return ir.ModelSpec((ir.Input("a", 3), ir.Input("b", 3)), nodes, ("y",), {})


MODELS = {
    "all_cells_chain": all_cells_chain,
    **{f"bidirectional_{m}_{'seq' if rs else 'last'}": (lambda m=m, rs=rs: bidirectional(m, rs))
       for m in ir.MERGE_MODES for rs in (True, False)},
    "repeat_vector": repeat_vector,
    "repeat_vector_from_vector": repeat_vector_from_vector,
    "encoder_decoder": encoder_decoder,
    "gru_encoder_decoder": gru_encoder_decoder,
}


def sample_inputs(spec, batch=3, steps=7, seed=0):
    rng = np.random.default_rng(seed)
    arrays = []
    for i in spec.inputs:
        x = rng.normal(size=(batch, steps, i.features)[3 - i.rank:]).astype(F32)
        if i.rank == 3:
            x[0, :2] = 0.0   # masked steps for a Masking(0.0)
            x[1, -1] = -1.5  # and for a Masking(-1.5)
        arrays.append(x)
    return arrays


def as_list(y):
    return y if isinstance(y, list) else [y]


@pytest.fixture
def saved(tmp_path):
    """A valid file of the all-cells chain: (path, spec)."""
    spec = all_cells_chain()
    path = tmp_path / "model.ernn"
    edgernn.Model(spec).save(path)
    return path, spec


# -- round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_gives_equal_outputs(name, tmp_path):
    spec = MODELS[name]()
    model = edgernn.Model(spec)
    path = tmp_path / f"{name}.ernn"
    model.save(path)
    loaded = edgernn.load(str(path))
    assert isinstance(loaded, edgernn.Model)

    x = sample_inputs(spec)
    for y, y_loaded in zip(as_list(model.predict(*x)), as_list(loaded.predict(*x))):
        np.testing.assert_array_equal(y_loaded, y)

    # the spec itself survives: every attribute and every weight, bit for bit
    header, arrays = store.encode(spec)
    header_loaded, arrays_loaded = store.encode(loaded.spec)
    assert header_loaded == header
    assert arrays.keys() == arrays_loaded.keys()
    for key in arrays:
        assert arrays_loaded[key].dtype == F32 and arrays_loaded[key].flags.c_contiguous
        np.testing.assert_array_equal(arrays_loaded[key], arrays[key], err_msg=key)
    assert loaded.spec.source == spec.source
    assert loaded.spec.parameter_count == spec.parameter_count

    # saving what was loaded writes the same header again
    again = tmp_path / "again.ernn"
    loaded.save(again)
    assert _read_header(again) == _read_header(path)


def test_streams_of_a_loaded_model_continue_identically(saved):
    path, spec = saved
    model, loaded = edgernn.Model(spec), edgernn.load(path)
    x = sample_inputs(spec, batch=4, steps=9)[0]
    s, s_loaded = model.stream(4), loaded.stream(4)
    np.testing.assert_array_equal(s_loaded.run(x), s.run(x))
    s_loaded.set_state(s.get_state())
    np.testing.assert_array_equal(s_loaded.step(x[:, 0]), s.step(x[:, 0]))


def _read_header(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("header.json"))


def test_header(saved):
    path, spec = saved
    header = _read_header(path)
    assert header["format"] == "edgernn-model"
    assert header["format_version"] == 1 and type(header["format_version"]) is int
    assert header["edgernn_version"] == edgernn.__version__
    assert header["source"] == SOURCE
    assert header["parameter_count"] == spec.parameter_count
    assert [i["name"] for i in header["inputs"]] == ["x"] and header["outputs"] == ["y"]
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names[0] == "header.json"
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
        # every array member is a plain float32 .npy, readable without pickle
        for name in names[1:]:
            assert name.endswith(".npy")
            array = np.lib.format.read_array(io.BytesIO(archive.read(name)), allow_pickle=False)
            assert array.dtype == np.dtype("<f4")


def test_loading_never_unpickles(saved, monkeypatch):
    """store.py parses the .npy header itself: neither pickle nor numpy's reader (which could be
    asked to unpickle) is called while loading."""
    path, _ = saved
    called = []

    def refuse(*args, **kwargs):
        called.append(True)
        raise AssertionError("pickle or numpy's .npy reader used while loading an .ernn file")

    monkeypatch.setattr(np.lib.format, "read_array", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    edgernn.load(path)
    assert not any(called)


# -- crafting files --------------------------------------------------------------------------------------------


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _npy_declaring(shape, dtype="<f4", payload=b"\0" * 64):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def assert_refused(path, *expected):
    """Loading ``path`` raises InvalidModelFile naming the file and containing each expected text."""
    with pytest.raises(InvalidModelFile) as caught:
        edgernn.load(path)
    message = str(caught.value)
    assert str(path) in message, message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    return message


UNPICKLED = []


def _record_unpickling(tag):
    UNPICKLED.append(tag)
    return tag


class _Payload:
    """An object whose unpickling would run code (here: a harmless recorder)."""

    def __reduce__(self):
        return (_record_unpickling, ("executed",))


def test_pickled_object_array_is_refused_without_unpickling(saved, tmp_path):
    path, _ = saved
    members = _members(path)
    key = "nodes/1/kernel.npy"
    assert key in members
    members[key] = _npy(np.array([_Payload(), _Payload()], dtype=object), allow_pickle=True)
    crafted = tmp_path / "pickled.ernn"
    _write(crafted, members)
    UNPICKLED.clear()
    message = assert_refused(crafted, key)
    assert "pickle" in message.lower() or "object" in message.lower()
    assert UNPICKLED == []
    # the same bytes do unpickle when asked to: the check above is not vacuous
    np.lib.format.read_array(io.BytesIO(members[key]), allow_pickle=True)
    assert UNPICKLED == ["executed", "executed"]
    UNPICKLED.clear()


# -- files that are not .ernn files -----------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 1, 10, 100, "half", -30, -1])
def test_truncated_file(saved, tmp_path, cut):
    path, _ = saved
    data = path.read_bytes()
    cut = len(data) // 2 if cut == "half" else cut % len(data) if cut < 0 else cut
    truncated = tmp_path / "truncated.ernn"
    truncated.write_bytes(data[:cut])
    assert_refused(truncated)


def test_corrupted_weight_bytes_fail_the_crc(saved, tmp_path):
    path, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("nodes/1/kernel.npy")
    # the local header is 30 bytes + name + extra; flip a byte in the middle of the data
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[offset] ^= 0x5A
    corrupted = tmp_path / "corrupted.ernn"
    corrupted.write_bytes(bytes(data))
    assert_refused(corrupted, "CRC")


def test_wrong_magic(saved, tmp_path):
    path, _ = saved
    data = bytearray(path.read_bytes())
    assert data[:4] == b"PK\x03\x04"
    data[:4] = b"ERNN"
    bad = tmp_path / "magic.ernn"
    bad.write_bytes(bytes(data))
    assert_refused(bad)


@pytest.mark.parametrize("content", [b"", b"hello, not a zip", b"GIF89a" + bytes(200), "csv".encode() * 100])
def test_not_a_zip(tmp_path, content):
    bad = tmp_path / "not_zip.ernn"
    bad.write_bytes(content)
    assert_refused(bad, "not a readable .ernn file")


def test_missing_file_and_directory(tmp_path):
    assert_refused(tmp_path / "nope.ernn", "no such file")
    folder = tmp_path / "folder.ernn"
    folder.mkdir()
    assert_refused(folder)


def test_npz_and_foreign_zip(tmp_path):
    npz = tmp_path / "weights.npz"
    np.savez(npz, a=np.zeros(3, F32))
    assert_refused(npz, "no header.json")
    other = tmp_path / "other.ernn"
    _write(other, {"header.json": json.dumps({"format": "something-else", "format_version": 1})})
    assert_refused(other, "does not describe an edgernn model")


# -- malformed headers and members -------------------------------------------------------------------------------


def _node(header, name):
    return next(n for n in header["nodes"] if n["op"]["name"] == name)


def _set(name, key, value):
    def mutate(h, m):
        _node(h, name)["op"][key] = value
    return mutate


def _delete(name, key):
    def mutate(h, m):
        del _node(h, name)["op"][key]
    return mutate


def _member(key, data):
    def mutate(h, m):
        m[key] = data
    return mutate


def _header(fn):
    def mutate(h, m):
        fn(h)
    return mutate


LSTM_KERNEL = "nodes/1/kernel.npy"

# (id, mutation of (header dict, members dict), texts the message must contain)
MALFORMED = [
    # wrong JSON types
    ("units_as_string", _set("lstm", "units", "6"), ["units must be int", "got str"]),
    ("units_as_float", _set("lstm", "units", 6.0), ["units must be int"]),
    ("units_as_bool", _set("lstm", "units", True), ["units must be int"]),
    ("return_sequences_as_int", _set("lstm", "return_sequences", 1), ["return_sequences must be bool", "got int"]),
    ("go_backwards_as_int", _set("gru", "go_backwards", 0), ["go_backwards must be bool"]),
    ("reset_after_as_int", _set("gru", "reset_after", 1), ["reset_after must be bool"]),
    ("zero_output_as_string", _set("gru_v1", "zero_output_for_mask", "true"), ["zero_output_for_mask must be bool"]),
    ("name_as_int", _set("head", "name", 7), ["name must be str"]),
    ("cell_as_list", _set("lstm", "cell", ["lstm"]), ["cell must be str"]),
    ("mask_value_as_string", _set("masking", "mask_value", "0"), ["mask_value must be float"]),
    ("mask_value_overflowing", _set("masking", "mask_value", 10**400), ["mask_value must be a finite number"]),
    ("unknown_op_type", _set("head", "type", "Conv2D"), ["unknown op 'Conv2D'"]),
    ("op_type_as_list", _set("head", "type", ["Dense"]), ["unknown op ['Dense']"]),
    ("op_type_missing", _delete("head", "type"), ["unknown op None"]),
    ("op_not_an_object", _header(lambda h: h["nodes"][0].__setitem__("op", "Masking")), ["unknown op 'Masking'"]),
    ("unknown_attribute", _set("lstm", "dropout", 0.1), ["unknown attributes ['dropout']"]),
    ("unknown_cell", _set("lstm", "cell", "qrnn"), ["unknown cell 'qrnn'"]),
    ("unknown_activation", _set("simple", "activation", "swish2"), ["activation 'swish2'"]),
    ("vector_activation_in_cell", _set("simple", "activation", "softmax"), ["not an element-wise activation"]),
    ("unknown_dense_activation", _set("head", "activation", "sparsemax"), ["unknown activation 'sparsemax'"]),
    ("required_null", _set("lstm", "cell", None), ["cell must not be null"]),
    ("required_missing", _delete("lstm", "cell"), ["cell"]),
    ("array_reference_as_string", _set("lstm", "kernel", LSTM_KERNEL), ["an array reference must be"]),
    ("array_reference_extra_key", _set("lstm", "kernel", {"array": LSTM_KERNEL, "dtype": "f4"}), ["an array reference"]),
    ("header_is_a_list", lambda h, m: m.__setitem__("header.json", b"[1, 2]"), ["does not describe an edgernn model"]),
    ("header_not_json", lambda h, m: m.__setitem__("header.json", b"{format: edgernn"), ["not valid JSON"]),
    ("header_not_utf8", lambda h, m: m.__setitem__("header.json", b"\xff\xfe\x00{"), ["not valid JSON"]),
    ("header_deeply_nested", lambda h, m: m.__setitem__("header.json", b"[" * 200_000 + b"]" * 200_000), ["not valid JSON"]),
    ("header_missing", lambda h, m: m.pop("header.json"), ["no header.json"]),
    ("nodes_not_a_list", _header(lambda h: h.__setitem__("nodes", {"0": h["nodes"][0]})), ["'nodes' must be a list"]),
    ("node_not_an_object", _header(lambda h: h["nodes"].__setitem__(0, "masking")), ["node 0 is not an object"]),
    ("node_inputs_as_string", _header(lambda h: h["nodes"][1].__setitem__("inputs", "m")), ["must be lists of names"]),
    ("node_mask_as_int", _header(lambda h: h["nodes"][1].__setitem__("mask", 3)), ["mask must be a name or null"]),
    ("outputs_not_names", _header(lambda h: h.__setitem__("outputs", [0])), ["outputs must be names"]),
    ("source_not_a_dict", _header(lambda h: h.__setitem__("source", "keras")), ["'source' must be a dict"]),
    ("input_features_as_string", _header(lambda h: h["inputs"][0].__setitem__("features", "4")), ["input 0 is malformed"]),
    ("input_features_as_bool", _header(lambda h: h["inputs"][0].__setitem__("features", True)), ["input 0 is malformed"]),
    ("input_features_zero", _header(lambda h: h["inputs"][0].__setitem__("features", 0)), ["input 0 is malformed"]),
    ("input_rank_as_float", _header(lambda h: h["inputs"][0].__setitem__("rank", 3.0)), ["input 0 is malformed"]),
    ("input_rank_4", _header(lambda h: h["inputs"][0].__setitem__("rank", 4)), ["input 0 is malformed"]),
    ("input_timesteps_as_string", _header(lambda h: h["inputs"][0].__setitem__("timesteps", "7")), ["input 0 is malformed"]),
    ("input_name_missing", _header(lambda h: h["inputs"][0].pop("name")), ["input 0 is malformed"]),
    # nested ops of the wrong type (see the Bidirectional file below for the nested case)
    # shapes that disagree
    ("kernel_wrong_shape", _member(LSTM_KERNEL, _npy(np.zeros((4, 25), F32))), ["kernel has shape (4, 25), expected (4, 24)"]),
    ("kernel_1d", _member(LSTM_KERNEL, _npy(np.zeros(96, F32))), ["kernel has shape (96,)"]),
    ("units_disagree_with_weights", _set("lstm", "units", 7), ["expected (4, 28)"]),
    ("dense_input_disagrees", _member("nodes/5/kernel.npy", _npy(np.zeros((4, 5), F32))), ["takes 4 features, gets 3"]),
    ("input_features_disagree", _header(lambda h: h["inputs"][0].__setitem__("features", 5)), ["takes (batch, T, 4)"]),
    ("reads_unknown_tensor", _header(lambda h: h["nodes"][2].__setitem__("inputs", ["nowhere"])), ["before it is made"]),
    ("output_never_made", _header(lambda h: h.__setitem__("outputs", ["ghost"])), ["output 'ghost' is never made"]),
    ("mask_names_a_data_tensor", _header(lambda h: h["nodes"][2].__setitem__("mask", "a")), ["is not a mask"]),
    ("duplicate_layer_names", _set("gru_v1", "name", "gru"), ["two or more layers are named 'gru'"]),
    ("too_many_outputs_named", _header(lambda h: h["nodes"][5].__setitem__("outputs", ["e", "e2"])), ["makes 1 tensors, 2 named"]),
    ("initial_state_wrong_count", _header(lambda h: h["nodes"][2].__setitem__("initial_state", ["a"])),
     ["initial_state must be 1 tensors of (batch, 5)"]),
    # bad weights
    ("nan_weights", _member(LSTM_KERNEL, _npy(np.full((4, 24), np.nan, F32))), ["kernel holds NaN or Inf"]),
    ("inf_weight", _member("nodes/2/recurrent_bias.npy", _npy(np.array([np.inf] + [0.0] * 14, F32))),
     ["recurrent_bias holds NaN or Inf"]),
    ("float64_weights", _member(LSTM_KERNEL, _npy(np.zeros((4, 24)))), ["has dtype float64, expected float32"]),
    ("int_weights", _member(LSTM_KERNEL, _npy(np.zeros((4, 24), np.int32))), ["has dtype int32"]),
    ("big_endian_weights", _member(LSTM_KERNEL, _npy(np.zeros((4, 24), ">f4"))), ["has dtype >f4"]),
    ("garbage_npy", _member(LSTM_KERNEL, b"\x93NUMPY garbage"), ["is not a valid .npy array"]),
    ("npy_shorter_than_declared", _member(LSTM_KERNEL, _npy_declaring((4, 24))), ["is not a valid .npy array"]),
    ("missing_array_member", lambda h, m: m.pop(LSTM_KERNEL), [f"array '{LSTM_KERNEL}' is missing"]),
    # absurd declared sizes
    ("npy_declares_terabytes", _member(LSTM_KERNEL, _npy_declaring((10**12,))), [LSTM_KERNEL]),
    ("npy_declares_huge_2d", _member(LSTM_KERNEL, _npy_declaring((4, 10**11))), [LSTM_KERNEL]),
    ("units_absurd", _set("lstm", "units", 10**9), ["units"]),
    ("units_beyond_int64", _set("lstm", "units", 10**30), ["units"]),
    ("input_features_absurd", _header(lambda h: h["inputs"][0].__setitem__("features", 10**12)), ["input 0 is malformed"]),
    ("input_timesteps_absurd", _header(lambda h: h["inputs"][0].__setitem__("timesteps", 10**12)), ["input 0 is malformed"]),
    # versions
    ("future_format_version", _header(lambda h: h.__setitem__("format_version", 2)), ["format version 2 is not supported", "version 1"]),
    ("format_version_as_string", _header(lambda h: h.__setitem__("format_version", "1")), ["format version '1'"]),
    ("format_version_as_bool", _header(lambda h: h.__setitem__("format_version", True)), ["format version True"]),
    ("format_version_as_float", _header(lambda h: h.__setitem__("format_version", 1.0)), ["format version 1.0"]),
    ("format_version_missing", _header(lambda h: h.pop("format_version")), ["format version None"]),
    ("format_missing", _header(lambda h: h.pop("format")), ["does not describe an edgernn model"]),
]


@pytest.mark.parametrize("mutate,expected", [pytest.param(m, e, id=i) for i, m, e in MALFORMED])
def test_malformed_file_is_refused(saved, tmp_path, mutate, expected):
    path, _ = saved
    members = _members(path)
    header = json.loads(members["header.json"])
    assert [n["op"]["name"] for n in header["nodes"]] == ["masking", "lstm", "gru", "gru_v1", "simple", "head", "log"]
    mutate(header, members)
    if "header.json" in members and members["header.json"] == _members(path)["header.json"]:
        members["header.json"] = json.dumps(header).encode()
    crafted = tmp_path / "crafted.ernn"
    _write(crafted, members)
    assert_refused(crafted, *expected)


def _bidirectional_file(tmp_path, mutate):
    path = tmp_path / "bi.ernn"
    edgernn.Model(bidirectional("concat", True)).save(path)
    members = _members(path)
    header = json.loads(members["header.json"])
    mutate(_node(header, "bi")["op"])
    members["header.json"] = json.dumps(header).encode()
    crafted = tmp_path / "bi_crafted.ernn"
    _write(crafted, members)
    return crafted


def test_nested_op_of_the_wrong_type(tmp_path):
    def forward_as_dense(op):
        op["forward"] = {"type": "Dense", "name": "d", "kernel": op["forward"]["kernel"]}
    assert_refused(_bidirectional_file(tmp_path, forward_as_dense), "forward: must be a Recurrent, got Dense")

    def forward_as_list(op):
        op["forward"] = [op["forward"]]
    assert_refused(_bidirectional_file(tmp_path, forward_as_list), "forward: unknown op")

    def merge_mode_unknown(op):
        op["merge_mode"] = "max"
    assert_refused(_bidirectional_file(tmp_path, merge_mode_unknown), "merge_mode 'max'")

    def both_forwards(op):
        op["backward"]["go_backwards"] = False
    assert_refused(_bidirectional_file(tmp_path, both_forwards), "must read backwards")


def test_repeat_vector_absurd_n(tmp_path):
    path = tmp_path / "rv.ernn"
    edgernn.Model(repeat_vector()).save(path)
    members = _members(path)
    header = json.loads(members["header.json"])
    for n, texts in ((10**12, ["n = 1000000000000 is over"]), (0, ["n must be a positive integer"]), (2.0, ["n must be int"])):
        _node(header, "repeat")["op"]["n"] = n
        members["header.json"] = json.dumps(header).encode()
        crafted = tmp_path / "rv_crafted.ernn"
        _write(crafted, members)
        assert_refused(crafted, *texts)


def test_limits_on_declared_sizes(saved, monkeypatch):
    path, _ = saved
    monkeypatch.setattr(store, "MAX_ARRAY_BYTES", 256)
    assert_refused(path, "over the 256 limit")
    monkeypatch.undo()
    monkeypatch.setattr(store, "MAX_HEADER_BYTES", 100)
    assert_refused(path, "header.json declares", "over the 100 limit")
    monkeypatch.undo()
    monkeypatch.setattr(store, "MAX_MEMBERS", 3)
    assert_refused(path, "members, over the 3 limit")
    monkeypatch.undo()
    edgernn.load(path)  # and within the limits it loads


def test_error_lists_the_problems_of_a_layer(saved, tmp_path):
    """The IR reports every problem of a layer at once (kernel and bias both wrong here)."""
    path, _ = saved
    members = _members(path)
    members[LSTM_KERNEL] = _npy(np.zeros((4, 20), F32))
    members["nodes/1/bias.npy"] = _npy(np.full(24, np.nan, F32))
    crafted = tmp_path / "two.ernn"
    _write(crafted, members)
    assert_refused(crafted, "kernel has shape (4, 20)", "bias holds NaN or Inf")


# -- atomic save ----------------------------------------------------------------------------------------------------


class _Boom(Exception):
    pass


def _failing_write_array(after, exc=_Boom):
    real = np.lib.format.write_array
    count = [0]

    def write_array(*args, **kwargs):
        count[0] += 1
        if count[0] > after:
            raise exc("disk full (simulated)")
        return real(*args, **kwargs)
    return write_array


@pytest.mark.parametrize("exc", [_Boom, KeyboardInterrupt, OSError])
def test_failed_save_leaves_the_old_file(saved, monkeypatch, exc):
    path, spec = saved
    before = path.read_bytes()
    folder = path.parent
    listing = sorted(os.listdir(folder))
    other = edgernn.Model(encoder_decoder())
    monkeypatch.setattr(np.lib.format, "write_array", _failing_write_array(after=2, exc=exc))
    with pytest.raises(exc):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(folder)) == listing  # no temporary file left behind
    x = sample_inputs(spec)
    np.testing.assert_array_equal(edgernn.load(path).predict(*x), edgernn.Model(spec).predict(*x))


def test_failed_save_to_a_new_path_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(np.lib.format, "write_array", _failing_write_array(after=0))
    with pytest.raises(_Boom):
        edgernn.Model(all_cells_chain()).save(tmp_path / "new.ernn")
    assert os.listdir(tmp_path) == []


def test_save_over_an_existing_file_replaces_it(saved):
    path, _ = saved
    replacement = repeat_vector()
    edgernn.Model(replacement).save(path)
    assert [type(n.op).__name__ for n in edgernn.load(path).spec.nodes] == ["Recurrent", "RepeatVector", "Recurrent", "Dense"]
    assert [p for p in os.listdir(path.parent) if p != path.name] == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def _lying_zip(path, name, payload, declared, extra=()):
    """A zip whose central directory says ``name`` holds ``declared`` bytes while it holds ``payload``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, data in extra:
            archive.writestr(key, data)
        archive.writestr(name, payload)
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")  # the last member's central directory entry
    data[central + 24:central + 28] = declared.to_bytes(4, "little")  # its uncompressed size
    path.write_bytes(bytes(data))


def test_member_whose_header_lies_about_its_size(saved, tmp_path):
    """A member declaring 100 bytes but inflating to 64 MB is cut at the declared size: refused, and no
    more than the limit is ever decompressed."""
    path, _ = saved
    members = _members(path)
    crafted = tmp_path / "lying.ernn"
    _lying_zip(crafted, "header.json", members["header.json"] + b" " * (64 << 20), 100,
               extra=[(k, v) for k, v in members.items() if k != "header.json"])
    assert_refused(crafted, "header.json")


def test_corrupt_compressed_member(saved, tmp_path):
    """A deflated member whose compressed stream is garbage: zlib.error becomes InvalidModelFile."""
    path, _ = saved
    members = _members(path)
    crafted = tmp_path / "deflated.ernn"
    with zipfile.ZipFile(crafted, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, data in members.items():
            archive.writestr(key, data)
    data = bytearray(crafted.read_bytes())
    start = data.index(b"header.json") + len(b"header.json")  # the first member's compressed bytes
    data[start:start + 40] = bytes(range(200, 240))
    crafted.write_bytes(bytes(data))
    assert_refused(crafted)


def test_array_total_is_bounded(saved, monkeypatch):
    path, _ = saved
    monkeypatch.setattr(store, "MAX_TOTAL_BYTES", 600)
    assert_refused(path, "arrays add up to over the 600 limit")
