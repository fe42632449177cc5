"""Write the firmware folder of a quantized model: the C99 runtime, the model's weights, build files.

``export(qmodel, folder, name, testbench)`` writes into ``folder``:

* the runtime sources of the top-level ``firmware_export/`` folder, installed with the wheel as
  ``edgernn.firmware_export`` (``ernn.h``, ``ernn_internal.h``, one ``ernn_<op>.c`` per op,
  ``ernn_model.c``, ``ernn_matvec.c``, ``ernn_floatmath.c``);
* ``<name>_model.h`` (sizes as macros, ``extern const ernn_model <name>_model``) and
  ``<name>_model.c`` (const weight arrays for flash, the layer table and the model struct);
* ``Makefile`` and ``CMakeLists.txt``; with ``testbench``, ``testbench.c`` (``make testbench``), all
  three filled in from ``firmware_export/templates/``;
* ``quantization_report.txt`` and ``.json``: the per-layer error against the float model on the
  calibration data (and the sizes, in the JSON);
* ``.edgernn-export``: the list of the files above, so that the next export into the same folder
  removes those it does not write again (``testbench.c`` of an export with ``testbench``, the
  ``<name>_model.h/.c`` of another name) -- only files listed there, never anything else.

``name`` is ``"model"`` by default here (a quantized model has no file name); ``edgernn export``
derives it from the model file's name with :func:`c_name`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InvalidInput
from ..quantize import QuantizedModel, format_report
from ..quantize.activations import ACT_IDS
from ..quantize.merge import MERGE_IDS
from ..rows import read_lines, text_rows

# The runtime, in one place: the export copies these, and fills the .c files into the Makefile and
# CMakeLists.txt templates (@SOURCES@).
RUNTIME_SOURCES = ("ernn.h", "ernn_internal.h", "ernn_model.c", "ernn_lstm.c", "ernn_gru.c", "ernn_rnn.c",
                   "ernn_dense.c", "ernn_mask.c", "ernn_embed.c", "ernn_conv.c", "ernn_pool.c", "ernn_merge.c", "ernn_matvec.c",
                   "ernn_floatmath.c")
SCHEME_IDS = {"int8": 0, "int8-weights": 1, "float32": 2}
KIND_IDS = {"lstm": 0, "gru": 1, "simple": 2, "dense": 3, "mask": 4, "conv": 5, "pool": 6, "embed": 7, "merge": 8}
POOL_IDS = {"max": 0, "avg": 1, "global_max": 2, "global_avg": 3}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
MANIFEST = ".edgernn-export"
_LISTED = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # a file of the folder itself: no path, no dot-file


def c_name(text: str, fallback: str = "model") -> str:
    """``text`` (a file's stem) as a C identifier fit for ``export``'s ``name``: every other
    character becomes ``_``, a leading digit gets ``m_`` in front, at most 41 characters;
    ``fallback`` when nothing is left. ``"basicmotions-lstm v2"`` -> ``"basicmotions_lstm_v2"``."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", text)).strip("_")
    if name[:1].isdigit():
        name = "m_" + name
    name = name[:41].rstrip("_")
    return name if _NAME.match(name) and f"{name}_model.c" not in RUNTIME_SOURCES else fallback


def runtime_folder() -> Path:
    """The folder of C runtime sources: ``firmware_export/`` in a checkout, ``edgernn/firmware_export``
    in an installed wheel (both are the package ``edgernn.firmware_export``)."""
    return Path(str(resources.files("edgernn.firmware_export")))


@dataclass
class Layout:
    """Byte layout of a stream's state and of the scratch buffer (the ``ernn_model`` offsets)."""

    state_h: list
    state_c: list
    state_ring: list
    state_count: list
    state_emitted: int   # -1: every step emits (no Conv1D or pooling)
    state_bytes: int
    off_a: int
    off_b: int
    off_work: int
    off_qx: int
    off_qy: int
    slot: list          # per layer: the byte offset in scratch of its kept output (a graph; its flag 4 before), 0: none
    scratch_bytes: int


def _pad4(n: int) -> int:
    return (n + 3) // 4 * 4


def work_words_of(layer, integer: bool) -> int:
    """The int32 words of scratch a layer's step works in: the Python twin of ``ernn_work_words``
    (ernn_model.c), which ``ernn_init`` checks the scratch layout with. An int8 recurrent layer its
    gates' pre-activations (P = units padded to a multiple of 4 rows per gate; LSTM and GRU 4 P,
    SimpleRNN P) and its input and h expanded for the kernels (see ``ernn_internal.h``); an int8
    Conv1D its window expanded and as bytes; a float Conv1D its window; the float schemes' LSTM and
    GRU 4 units values; a Dense units; Masking, pooling, Embedding and merges none."""
    if layer.kind in ("mask", "pool", "embed", "merge"):
        return 0
    if layer.kind == "conv":
        columns = layer.taps * layer.in_size
        return _pad4(columns) + _pad4(columns) // 4 if integer else columns
    if layer.recurrent and integer:
        return (2 if layer.kind == "simple" else 5) * _pad4(layer.units) + _pad4(layer.in_size)
    return (4 if layer.kind in ("lstm", "gru") else 1) * layer.units


def tiles(weights: np.ndarray, gates: int) -> np.ndarray:
    """int8 ``weights`` (gates * units rows, columns) in the layout of the C kernels (ernn_internal.h):
    each gate's rows padded with zero rows to a multiple of 4, the columns to a multiple of 4, the
    bytes w + 128 (uint8) in 4 x 4 tiles, row block by row block, column block by column block,
    each tile row by row."""
    rows, columns = weights.shape
    units = rows // gates
    padded = np.zeros((gates, _pad4(units), _pad4(columns)), np.int16)
    padded[:, :units, :columns] = np.asarray(weights, np.int16).reshape(gates, units, columns)
    blocks = padded.reshape(-1, 4, _pad4(columns) // 4, 4).transpose(0, 2, 1, 3)  # row block, column block, i, j
    return (blocks + 128).astype(np.uint8).reshape(-1)


def padded_rows(values, gates: int, fill: int) -> np.ndarray:
    """A per-row array of a recurrent layer (gates * units) with each gate padded to a multiple of 4 rows."""
    values = np.asarray(values)
    units = len(values) // gates
    out = np.full((gates, _pad4(units)), fill, values.dtype)
    out[:, :units] = values.reshape(gates, units)
    return out.reshape(-1)


def layout(qmodel: QuantizedModel) -> Layout:
    spec = qmodel.spec
    integer = spec.scheme == "int8"
    h_size, c_size, value = (1, 2, 1) if integer else (4, 4, 4)
    offset, state_h, state_c, state_ring, state_count = 0, [], [], [], []
    for layer in spec.layers:
        state_h.append(offset if layer.recurrent else 0)
        if layer.recurrent:
            offset += _pad4(layer.units * h_size)
        state_c.append(offset if layer.kind == "lstm" else 0)
        if layer.kind == "lstm":
            offset += _pad4(layer.units * c_size)
        state_ring.append(offset if layer.windowed else 0)
        if layer.windowed:  # int8: the ring int8, a global pooling's running values int32
            offset += _pad4(layer.ring_size * (4 if layer.pool.startswith("global") else value))
        state_count.append(offset if layer.windowed else 0)
        if layer.windowed:
            offset += 12  # fill, phase, pos
    state_emitted = -1
    if spec.windowed:  # the flag of the last step, then the last emitted output
        state_emitted, offset = offset, offset + 4 + _pad4(spec.outputs * value)
    width = max([spec.features] + [layer.units for layer in spec.layers])
    work_words = max(work_words_of(layer, integer) for layer in spec.layers)
    off_a, off_b = 0, _pad4(width * value)
    off_work = 2 * off_b
    off_qx = off_work + 4 * work_words
    off_qy = off_qx + (_pad4(spec.features) if integer else 0)
    total = off_qy + (_pad4(spec.outputs) if integer else 0)
    # a graph: the output of a layer read by a later one than the next is kept in a slot of its own,
    # after an int32 flag (did the layer write a new row this step)
    slot = [0] * len(spec.layers)
    for index, layer in enumerate(spec.layers):
        if any(index in later.sources for later in spec.layers[index + 2:]):
            slot[index], total = total + 4, total + 4 + _pad4(layer.units * value)
    return Layout(state_h, state_c, state_ring, state_count, state_emitted, max(offset, 4), off_a, off_b, off_work,
                  off_qx, off_qy, slot, total)


def _source(lay: Layout, index: int, source: int) -> int:
    """``ernn_layer.src`` of layer ``index`` reading layer ``source`` (-1: the model's input): 0 the
    layer before, -1 the input, else the source's slot."""
    if source == index - 1:
        return 0
    return -1 if source < 0 else lay.slot[source]


def _c_float(v) -> str:
    text = repr(float(np.float32(v)))
    return text + "f" if ("." in text or "e" in text) else text + ".0f"


class _Arrays:
    """The const arrays of the model file, deduplicated by content (e.g. one sigmoid table)."""

    def __init__(self, prefix: str):
        self.prefix, self.lines, self.names, self.bytes = prefix, [], {}, 0

    def add(self, label: str, array) -> str:
        if array is None or np.asarray(array).size == 0:
            return "NULL"
        array = np.ascontiguousarray(array).reshape(-1)
        ctype = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.int16): "int16_t",
                 np.dtype(np.int32): "int32_t", np.dtype(np.float32): "float"}[array.dtype]
        key = (ctype, array.tobytes())
        if key in self.names:
            return self.names[key]
        name = f"{self.prefix}_{label}"
        values = [_c_float(v) for v in array] if ctype == "float" else [str(int(v)) for v in array]
        rows = [", ".join(values[i:i + 16]) for i in range(0, len(values), 16)]
        self.lines.append(f"static const {ctype} {name}[{array.size}] = {{\n    " + ",\n    ".join(rows) + "\n};\n")
        self.names[key] = name
        self.bytes += array.nbytes
        return name


def model_sources(qmodel: QuantizedModel, name: str) -> tuple[str, str, dict]:
    """``(<name>_model.h text, <name>_model.c text, sizes)``."""
    spec, lay = qmodel.spec, layout(qmodel)
    upper = name.upper()
    integer = spec.scheme == "int8"
    arrays = _Arrays(name)
    layers = []
    for i, layer in enumerate(spec.layers):
        p = f"l{i}"
        fields = {
            "kind": KIND_IDS[layer.kind], "in_size": layer.in_size, "units": layer.units, "act": ACT_IDS[layer.act],
            "gate_act": ACT_IDS[layer.gate_act] if layer.kind in ("lstm", "gru") else 0,
            "reset_after": int(layer.reset_after), "has_weights": int(layer.has_weights),
            "state_h": lay.state_h[i], "state_c": lay.state_c[i], "masked": int(layer.masked),
            "zero_output": int(layer.zero_output), "mask_q": layer.mask_q, "mask_f": _c_float(layer.mask_f),
        }
        if layer.kind == "embed":
            fields.update(vocab=layer.vocab, mask_zero=int(layer.mask_zero))
        if layer.sources:  # a graph (a chain leaves src, src2 and slot 0)
            fields["src"] = _source(lay, i, layer.sources[0])
        if lay.slot[i]:
            fields["slot"] = lay.slot[i]
        if layer.kind == "merge":
            fields.update(merge=MERGE_IDS[layer.merge], src2=_source(lay, i, layer.sources[1]), in_size2=layer.in_size2,
                          zp_in2=layer.zp_in2)
        if layer.windowed:
            fields.update(taps=layer.taps, dilation=layer.dilation, groups=layer.groups, strides=layer.strides,
                          need=layer.need, pool=POOL_IDS.get(layer.pool, 0), state_ring=lay.state_ring[i],
                          state_count=lay.state_count[i])
        float_weights = layer.w is not None and layer.w.dtype == np.float32
        gates = len(layer.bx) // layer.units if integer and layer.recurrent else 0
        if integer and layer.recurrent:  # tiled for the kernels, per-row arrays padded alike
            fields["wt"] = arrays.add(f"{p}_wt", tiles(layer.w, gates))
            fields["ut"] = arrays.add(f"{p}_ut", tiles(layer.u, gates))
        elif integer and layer.kind == "conv" and layer.groups == 1:  # one matrix: the kernels' tiles
            fields["wt"] = arrays.add(f"{p}_wt", tiles(layer.w, 1))
        elif integer or not float_weights:
            fields["w"] = arrays.add(f"{p}_w", layer.w)
            fields["u"] = arrays.add(f"{p}_u", layer.u)
        if integer:
            for key in ("bx", "bh", "mx", "nx", "mh", "nh", "lut_act", "lut_gate", "exp_table"):
                values = getattr(layer, key)
                if gates and key in ("bx", "bh", "mx", "nx", "mh", "nh"):
                    values = padded_rows(values, gates, 1 if key in ("nx", "nh") else 0)
                fields[key] = arrays.add(f"{p}_{key}" if not key.startswith("lut") else
                                         f"table_{layer.act if key == 'lut_act' else layer.gate_act}", values)
            for key in ("mode", "relu", "use_table", "cell_shift", "mq", "nq", "mo", "no", "zp_in", "zp_a", "zp_out"):
                fields[key] = int(getattr(layer, key))
        else:
            if float_weights:
                fields["wf"] = arrays.add(f"{p}_wf", layer.w)
                fields["uf"] = arrays.add(f"{p}_uf", layer.u)
            fields["sw"] = arrays.add(f"{p}_sw", layer.sw)
            fields["su"] = arrays.add(f"{p}_su", layer.su)
            fields["bxf"] = arrays.add(f"{p}_bxf", layer.bx)
            fields["bhf"] = arrays.add(f"{p}_bhf", layer.bh)
        body = ", ".join(f".{k} = {v}" for k, v in fields.items())
        layers.append(f"    {{{body}}}")
    model_fields = {
        "scheme": SCHEME_IDS[spec.scheme], "n_layers": len(spec.layers), "layers": f"{name}_layers",
        "input_features": spec.features, "output_features": spec.outputs,
        "state_bytes": f"{lay.state_bytes}u", "scratch_bytes": f"{lay.scratch_bytes}u",
        "off_a": f"{lay.off_a}u", "off_b": f"{lay.off_b}u", "off_work": f"{lay.off_work}u",
        "off_qx": f"{lay.off_qx}u", "off_qy": f"{lay.off_qy}u",
        "s_in": _c_float(spec.s_in), "zp_in": spec.zp_in, "s_out": _c_float(spec.s_out), "zp_out": spec.zp_out,
        "state_emitted": lay.state_emitted,
        "in_offset": arrays.add("in_offset", spec.in_offset), "in_scale": arrays.add("in_scale", spec.in_scale),
    }
    source = [f"/* {name}: generated by edgernn export ({spec.scheme}); const data for flash. */\n",
              f'#include "{name}_model.h"\n\n', *arrays.lines,
              f"static const ernn_layer {name}_layers[{len(layers)}] = {{\n" + ",\n".join(layers) + "\n};\n\n",
              f"const ernn_model {name}_model = {{\n"
              + ",\n".join(f"    .{k} = {v}" for k, v in model_fields.items()) + "\n};\n"]
    header = f"""/* {name}: generated by edgernn export. Scheme {spec.scheme}; see ernn.h for the API. */
#ifndef {upper}_MODEL_H
#define {upper}_MODEL_H

#include "ernn.h"

#define {upper}_INPUT_FEATURES {spec.features}
#define {upper}_OUTPUT_FEATURES {spec.outputs}
#define {upper}_SCHEME ERNN_SCHEME_{spec.scheme.upper().replace('-', '_')}
/* caller-owned buffers: one state per stream, one scratch per thread (declare as int32_t arrays) */
#define {upper}_STATE_BYTES {lay.state_bytes}
#define {upper}_SCRATCH_BYTES {lay.scratch_bytes}
#define {upper}_STATE_WORDS {(lay.state_bytes + 3) // 4}
#define {upper}_SCRATCH_WORDS {(lay.scratch_bytes + 3) // 4}
/* int8 scheme: real = scale * (q - zero_point) */
#define {upper}_INPUT_SCALE {_c_float(spec.s_in)}
#define {upper}_INPUT_ZERO_POINT {spec.zp_in}
#define {upper}_OUTPUT_SCALE {_c_float(spec.s_out)}
#define {upper}_OUTPUT_ZERO_POINT {spec.zp_out}

extern const ernn_model {name}_model;

#endif
"""
    sizes = {"weight_bytes": arrays.bytes, "state_bytes": lay.state_bytes, "scratch_bytes": lay.scratch_bytes}
    return header, "".join(source), sizes


def export(qmodel: QuantizedModel, folder, name: str = "model", testbench: bool = False) -> dict:
    """Write the firmware folder; returns the sizes (bytes): weight_bytes, state_bytes, scratch_bytes.

    Files that an earlier export wrote into ``folder`` (listed in its ``.edgernn-export``) and this
    one does not are removed; no other file of the folder is touched.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"--name must be a C identifier (letters, digits, _; at most 41), got {name!r}")
    if f"{name}_model.c" in RUNTIME_SOURCES:
        raise InvalidInput(f"--name {name}: {name}_model.c is a runtime source; choose another name")
    folder = Path(folder)
    runtime = runtime_folder()
    header, source, sizes = model_sources(qmodel, name)
    texts = {f"{name}_model.h": header, f"{name}_model.c": source}
    for template, target in (("Makefile.in", "Makefile"), ("CMakeLists.txt.in", "CMakeLists.txt")) + \
            ((("testbench.c.in", "testbench.c"),) if testbench else ()):
        text = (runtime / "templates" / template).read_text()
        sources = " ".join(source for source in RUNTIME_SOURCES if source.endswith(".c"))
        texts[target] = text.replace("@NAME@", name).replace("@UPPER@", name.upper()).replace("@SOURCES@", sources)
    texts["quantization_report.txt"] = f"scheme: {qmodel.scheme}\n" + format_report(qmodel.report) + "\n"
    texts["quantization_report.json"] = json.dumps({"scheme": qmodel.scheme, "layers": qmodel.report, "sizes": sizes},
                                                   indent=1)
    written = set(RUNTIME_SOURCES) | set(texts)
    folder.mkdir(parents=True, exist_ok=True)
    earlier = _listed(folder)
    _write_manifest(folder, earlier | written)  # until the end, a failed export still knows every file it owns
    for runtime_source in RUNTIME_SOURCES:
        shutil.copyfile(runtime / runtime_source, folder / runtime_source)
    for target, text in texts.items():
        (folder / target).write_text(text)
    for stale in sorted(earlier - written):
        path = folder / stale
        if path.is_file() or path.is_symlink():
            path.unlink()
    _write_manifest(folder, written)
    return sizes


def _listed(folder: Path) -> set:
    """The files an earlier export wrote into ``folder`` (its manifest; names of the folder's own files only)."""
    try:
        lines = (folder / MANIFEST).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    return {line.strip() for line in lines if _LISTED.match(line.strip()) and line.strip() != MANIFEST}


def _write_manifest(folder: Path, files) -> None:
    (folder / MANIFEST).write_text("# written by edgernn export: the next export into this folder removes the files\n"
                                   "# listed here that it does not write again (and no others)\n"
                                   + "".join(f"{f}\n" for f in sorted(files)))


def load_calibration(path, features: int, codes: bool = False) -> np.ndarray:
    """Calibration data from a file: ``.npy`` (sequences, T, features) or (T, features), or text
    rows (one timestep per row, one sequence) in the format ``edgernn run`` reads
    (:mod:`edgernn.rows`: comma, ``;``, tab or space separated, ``#`` comments, a header line).

    ``codes``: the model takes integer codes (an Embedding first): ``.npy`` (sequences, T),
    (sequences, T, 1) or (T,) codes at any T, or text rows of one code each; returned as (sequences,
    T) or (T,) in the file's dtype (whether they are codes of the vocabulary is checked by
    ``quantize``, naming the layer)."""
    path = Path(path)
    if codes:
        return _load_codes(path)
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with open(path, "rb") as file:
                rows = []
                for label, values in text_rows(read_lines(file, path), features):
                    if isinstance(values, str):  # a bad row: its problem
                        raise InvalidInput(f"{path}: not readable calibration data ({label}: {values})")
                    rows.append(values)
            if not rows:
                raise InvalidInput(f"{path}: no rows of calibration data")
            array = np.array(rows, dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: not readable calibration data ({exc})") from None
    if array.ndim not in (2, 3) or array.shape[-1] != features:
        raise InvalidInput(f"{path}: calibration data of shape {array.shape}; expected (sequences, T, {features}) "
                           f"or (T, {features})")
    return np.asarray(array, dtype=np.float32)


def _load_codes(path: Path) -> np.ndarray:
    """:func:`load_calibration` of a model of integer codes."""
    if path.suffix.lower() != ".npy":
        return load_calibration(path, 1)[:, 0]  # one code per row: one sequence (T,)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: not readable calibration data ({exc})") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (1, 2) or array.size == 0:
        raise InvalidInput(f"{path}: calibration data of shape {array.shape}; a model of integer codes takes "
                           "(sequences, T), (sequences, T, 1) or (T,) codes")
    return array


MCU_TARGETS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
}


def mcu_sizes(folder, name: str, scheme: str, target: str = "cortex-m4") -> dict | None:
    """Flash and static RAM of the runtime and of the model, built with arm-none-eabi-gcc -Os for
    ``target`` (int8 models with ERNN_NO_FLOAT); None when the compiler is absent.

    ``{"runtime_flash", "model_flash", "static_ram"}`` in bytes (flash = text + data, static RAM =
    data + bss, from arm-none-eabi-size over the objects; state and scratch are the caller's)."""
    gcc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if gcc is None or size is None:
        return None
    folder = Path(folder)
    sources = [s for s in RUNTIME_SOURCES if s.endswith(".c")] + [f"{name}_model.c"]
    defines = ["-DERNN_NO_FLOAT"] if scheme == "int8" else []
    totals = {"runtime_flash": 0, "model_flash": 0, "static_ram": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            obj = Path(tmp) / (Path(source).stem + ".o")
            subprocess.run([gcc, "-std=c99", "-Os", "-ffp-contract=off", "-ffunction-sections", "-fdata-sections",
                            *MCU_TARGETS[target], *defines, "-I", str(folder), "-c", str(folder / source), "-o", str(obj)],
                           check=True, capture_output=True)
            line = subprocess.run([size, str(obj)], check=True, capture_output=True, text=True).stdout.splitlines()[1]
            text, data, bss = (int(v) for v in line.split()[:3])
            key = "model_flash" if source == f"{name}_model.c" else "runtime_flash"
            totals[key] += text + data
            totals["static_ram"] += data + bss
    return totals
