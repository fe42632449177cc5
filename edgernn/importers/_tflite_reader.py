"""A minimal reader of ``.tflite`` flatbuffers: subgraphs, tensors, operators and their options.

Why not the interpreter: ``Interpreter._get_ops_details()`` lists the ops of the main subgraph only
(not the body of a WHILE loop) and neither it nor ``get_tensor_details()`` exposes an op's options
(fused activation, the loop's subgraph indices, the fused LSTM's cell clip). The flatbuffer layout is
simple and stable, so it is read here with ``struct`` and NumPy -- no TensorFlow, no ``flatbuffers``
package, no interpreter needed to convert a model.

Flatbuffers in one paragraph: the file starts with a ``uint32`` offset to the root table (and the
identifier ``TFL3`` at bytes 4-8). A table starts with an ``int32`` back-offset to its vtable; the
vtable holds ``uint16`` sizes and then one ``uint16`` offset per field (0 = absent, use the default).
References (tables, vectors, strings) are ``uint32`` offsets relative to where they are stored; a
vector is a ``uint32`` length followed by its elements. Field numbers below are those of TFLite's
``schema.fbs`` (checked against ``ai_edge_litert.schema_py_generated``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# TensorType enum -> NumPy dtype (None: a type no float model carries as data).
_TENSOR_TYPES = {
    0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
    7: np.int16, 9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16,
}
_TENSOR_TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
    8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 13: "resource",
    14: "variant", 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16",
}

# BuiltinOperator enum, by code (schema.fbs), for messages that name an op.
_BUILTIN_NAMES = (
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE "
    "EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D "
    "LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 "
    "RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM CALL "
    "CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND "
    "SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE "
    "BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST "
    "PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN "
    "TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW "
    "ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK "
    "REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR "
    "LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS "
    "WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE "
    "NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM "
    "BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D "
    "IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL "
    "CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL "
    "BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD "
    "UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR "
    "RIGHT_SHIFT STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM "
    "STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE STABLEHLO_BROADCAST_IN_DIM "
    "STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE STABLEHLO_ABS "
    "STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG "
    "STABLEHLO_MINIMUM STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER "
    "STABLEHLO_RSQRT STABLEHLO_SELECT STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER "
    "STABLEHLO_COMPARE STABLEHLO_CONVERT STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE "
    "STABLEHLO_PAD STABLEHLO_IOTA STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT "
    "STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR "
    "REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE "
)
BUILTIN_NAMES = _BUILTIN_NAMES.split()
BUILTIN_CODES = {name: code for code, name in enumerate(BUILTIN_NAMES)}


class FormatError(Exception):
    """The bytes are not a well-formed TFLite flatbuffer (the importer names the file)."""


class _Table:
    """One flatbuffer table: typed reads of its fields by field number, with defaults."""

    __slots__ = ("buf", "pos", "vtable", "vtable_size")

    def __init__(self, buf: memoryview, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - _unpack("<i", buf, pos)
        self.vtable_size = _unpack("<H", buf, self.vtable)

    def _offset(self, field_number: int) -> int:
        at = 4 + 2 * field_number
        if at + 2 > self.vtable_size:
            return 0
        return _unpack("<H", self.buf, self.vtable + at)

    def has(self, field_number: int) -> bool:
        return self._offset(field_number) != 0

    def scalar(self, field_number: int, fmt: str, default=0):
        off = self._offset(field_number)
        return default if not off else _unpack("<" + fmt, self.buf, self.pos + off)

    def _indirect(self, field_number: int) -> Optional[int]:
        off = self._offset(field_number)
        if not off:
            return None
        at = self.pos + off
        return at + _unpack("<I", self.buf, at)

    def table(self, field_number: int) -> Optional["_Table"]:
        at = self._indirect(field_number)
        return None if at is None else _Table(self.buf, at)

    def _vector(self, field_number: int) -> tuple[int, int]:
        at = self._indirect(field_number)
        if at is None:
            return 0, 0
        n = _unpack("<I", self.buf, at)
        return at + 4, n

    def array(self, field_number: int, dtype) -> np.ndarray:
        start, n = self._vector(field_number)
        dtype = np.dtype(dtype).newbyteorder("<")
        if start + n * dtype.itemsize > len(self.buf):
            raise FormatError("a vector runs past the end of the file")
        return np.frombuffer(self.buf, dtype, n, start) if n else np.zeros(0, dtype)

    def tables(self, field_number: int) -> list["_Table"]:
        start, n = self._vector(field_number)
        if start + 4 * n > len(self.buf):
            raise FormatError("a vector runs past the end of the file")
        return [_Table(self.buf, start + 4 * k + _unpack("<I", self.buf, start + 4 * k)) for k in range(n)]

    def string(self, field_number: int) -> str:
        start, n = self._vector(field_number)
        return bytes(self.buf[start:start + n]).decode("utf-8", "replace")


def _unpack(fmt: str, buf, pos: int):
    if pos < 0:
        raise FormatError("an offset points before the start of the file")
    try:
        return struct.unpack_from(fmt, buf, pos)[0]
    except struct.error as exc:
        raise FormatError("an offset points past the end of the file") from exc


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    signature: Optional[tuple[int, ...]]   # shape_signature: -1 where a dimension is dynamic
    type_code: int
    buffer: int
    is_variable: bool
    scale: Optional[np.ndarray] = None      # quantization, per tensor or per channel
    zero_point: Optional[np.ndarray] = None
    quantized_dimension: int = 0

    @property
    def type_name(self) -> str:
        return _TENSOR_TYPE_NAMES.get(self.type_code, f"type#{self.type_code}")


@dataclass
class Operator:
    code: int
    name: str            # builtin name, or "CUSTOM(<code>)"
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Optional[_Table]
    options_type: int


@dataclass
class Subgraph:
    index: int
    name: str
    tensors: list[Tensor]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: list[Operator]


@dataclass
class Model:
    version: int
    subgraphs: list[Subgraph]
    buffers: list[Optional[memoryview]] = field(repr=False)

    def constant(self, tensor: Tensor) -> Optional[np.ndarray]:
        """The tensor's stored value (as stored: int8 stays int8), or None if it has none."""
        if not (0 < tensor.buffer < len(self.buffers)):
            return None
        data = self.buffers[tensor.buffer]
        if data is None or len(data) == 0:
            return None
        dtype = _TENSOR_TYPES.get(tensor.type_code)
        if dtype is None:
            raise FormatError(f"tensor {tensor.name!r} holds constant {tensor.type_name} data")
        dtype = np.dtype(dtype).newbyteorder("<")
        count = int(np.prod(tensor.shape)) if tensor.shape else 1
        if count * dtype.itemsize != len(data):
            raise FormatError(f"tensor {tensor.name!r}: shape {list(tensor.shape)} does not fit its "
                              f"{len(data)}-byte buffer")
        return np.frombuffer(data, dtype, count).astype(dtype.newbyteorder("="), copy=True).reshape(tensor.shape)


def read_model(blob: bytes) -> Model:
    """Parse a ``.tflite`` file's bytes. Raises :class:`FormatError` for anything malformed."""
    if len(blob) < 16 or blob[4:8] != b"TFL3":
        raise FormatError("not a TFLite flatbuffer (no TFL3 identifier)")
    buf = memoryview(blob)
    try:
        root = _Table(buf, _unpack("<I", buf, 0))
        version = root.scalar(0, "I", 0)
        codes = []
        for oc in root.tables(1):
            deprecated = oc.scalar(0, "b", 0)
            builtin = oc.scalar(3, "i", 0)
            code = max(int(deprecated), int(builtin))  # schema: the larger of the two is the real one
            name = BUILTIN_NAMES[code] if 0 <= code < len(BUILTIN_NAMES) else f"BUILTIN#{code}"
            if name == "CUSTOM":
                name = f"CUSTOM({oc.string(1)})"
            codes.append((code, name))
        buffers: list[Optional[memoryview]] = []
        for b in root.tables(4):
            if b.has(0):
                start, n = b._vector(0)
                if start + n > len(buf):
                    raise FormatError("a buffer runs past the end of the file")
                buffers.append(buf[start:start + n])
            elif b.has(1):  # large models: data stored after the flatbuffer, at an absolute offset
                offset, size = b.scalar(1, "Q", 0), b.scalar(2, "Q", 0)
                if offset + size > len(buf):
                    raise FormatError("an external buffer runs past the end of the file")
                buffers.append(buf[offset:offset + size])
            else:
                buffers.append(None)
        subgraphs = []
        for gi, g in enumerate(root.tables(2)):
            tensors = []
            for ti, t in enumerate(g.tables(0)):
                q = t.table(4)
                scale = zero = None
                qdim = 0
                if q is not None and q.has(2):
                    scale = q.array(2, np.float32).astype(np.float64)
                    zero = q.array(3, np.int64) if q.has(3) else np.zeros(len(scale), np.int64)
                    qdim = q.scalar(6, "i", 0)
                sig = tuple(int(v) for v in t.array(7, np.int32)) if t.has(7) else None
                tensors.append(Tensor(
                    index=ti, name=t.string(3), shape=tuple(int(v) for v in t.array(0, np.int32)),
                    signature=sig, type_code=t.scalar(1, "b", 0), buffer=t.scalar(2, "I", 0),
                    is_variable=bool(t.scalar(5, "B", 0)), scale=scale if scale is not None and len(scale) else None,
                    zero_point=zero, quantized_dimension=qdim,
                ))
            operators = []
            for op in g.tables(3):
                k = op.scalar(0, "I", 0)
                if k >= len(codes):
                    raise FormatError(f"an operator uses opcode #{k}, the file defines {len(codes)}")
                code, name = codes[k]
                operators.append(Operator(
                    code=code, name=name, inputs=tuple(int(v) for v in op.array(1, np.int32)),
                    outputs=tuple(int(v) for v in op.array(2, np.int32)),
                    options=op.table(4), options_type=op.scalar(3, "B", 0),
                ))
            subgraphs.append(Subgraph(gi, g.string(4), tensors, tuple(int(v) for v in g.array(1, np.int32)),
                                      tuple(int(v) for v in g.array(2, np.int32)), operators))
    except (FormatError, UnicodeDecodeError, ValueError, IndexError, OverflowError, MemoryError) as exc:
        raise FormatError(str(exc) or type(exc).__name__) from exc
    if not subgraphs:
        raise FormatError("the model holds no subgraph")
    for g in subgraphs:
        n = len(g.tensors)
        for op in g.operators:
            if any(not (-1 <= i < n) for i in op.inputs + op.outputs):
                raise FormatError(f"subgraph {g.index}: operator {op.name} refers to a tensor that does not exist")
        if any(not (0 <= i < n) for i in g.inputs + g.outputs):
            raise FormatError(f"subgraph {g.index}: an input or output refers to a tensor that does not exist")
    return Model(version, subgraphs, buffers)
