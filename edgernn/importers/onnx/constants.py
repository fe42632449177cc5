"""Constants and shapes: ``Constant``, ``Shape``, ``ConstantOfShape``, ``Equal``, ``Expand`` of a fill,
an ``If`` on a constant condition (its branch followed inline), ``Mul``/``Add`` of sizes, and any op
whose inputs are all constants, folded with onnx's reference evaluator."""

from __future__ import annotations

import numpy as np

from .values import _Const, _Data, _Fill, _Refuse, _Shape, _Unknown, _UNKNOWN


class _ConstantOps:
    """What the graph computes before any data (a mixin of :class:`~.converter._Converter`)."""

    def _op_Constant(self, node, inputs, attrs, where):
        from onnx import numpy_helper

        for a in node.attribute:
            if a.name == "value":
                return _Const(numpy_helper.to_array(a.t))
            if a.name in ("value_float", "value_int"):
                return _Const(np.array(attrs[a.name], np.float32 if a.name == "value_float" else np.int64))
            if a.name in ("value_floats", "value_ints"):
                return _Const(np.array(attrs[a.name], np.float32 if a.name == "value_floats" else np.int64))
        raise _Refuse(f"{where}: only dense tensor constants are supported")

    def _op_Shape(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            dims = tuple(x.value.shape)
        elif isinstance(x, _Fill):
            dims = x.dims
        elif isinstance(x, _Data):
            dims = tuple(self._axis_size(x, a) for a in x.axes)
        else:
            raise _Refuse(f"{where}: Shape of a {type(x).__name__.strip('_')} is not supported")
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return _Shape(tuple(dims[slice(start, end)]))

    def _op_ConstantOfShape(self, node, inputs, attrs, where):
        from onnx import numpy_helper

        value = 0.0
        if "value" in attrs:
            value = float(numpy_helper.to_array(attrs["value"]).reshape(-1)[0])
        shape = inputs[0]
        if isinstance(shape, _Const):
            return _Const(np.full(tuple(int(d) for d in shape.value.reshape(-1)), value, np.float32))
        if isinstance(shape, _Shape):
            return _Fill(value, shape.dims)
        raise _Refuse(f"{where}: ConstantOfShape needs a shape")

    def _fold(self, node, inputs, where):
        """Evaluate a node whose inputs are all constants with onnx's reference evaluator."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        names = [f"in{i}" if inputs[i] is not None else "" for i in range(len(inputs))]
        copy = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
        copy.attribute.extend(node.attribute)
        feeds = {n: v.value for n, v in zip(names, inputs) if n}
        try:
            graph = helper.make_graph(
                [copy], "fold",
                [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                 for n, v in feeds.items()],
                [helper.make_empty_tensor_value_info(f"out{i}") for i in range(len(node.output))])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
            results = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:  # noqa: BLE001
            raise _Refuse(f"{where}: cannot evaluate it on constants: {exc}") from exc
        return [_Const(np.asarray(r)) for r in results]

    # constant arguments -------------------------------------------------------------------------
    def _ints(self, value, where, what) -> list[int]:
        if isinstance(value, _Const):
            return [int(v) for v in np.asarray(value.value).reshape(-1)]
        raise _Refuse(f"{where}: {what} must be a constant")

    def _axes_arg(self, node, inputs, attrs, where, index=1):
        if "axes" in attrs:
            return list(attrs["axes"])
        if len(inputs) > index and inputs[index] is not None:
            return self._ints(inputs[index], where, "axes")
        return None

    def _all_const(self, inputs) -> bool:
        return all(v is None or isinstance(v, _Const) for v in inputs)

    def _shape_const(self, v):
        """A shape whose entries are all numbers, as the constant it is (anything else unchanged)."""
        if isinstance(v, _Shape) and all(isinstance(d, int) for d in v.dims):
            return _Const(np.array(v.dims if not v.scalar else v.dims[0], np.int64))
        return v

    def _constant_arithmetic(self, node, inputs, where):
        """An arithmetic node (``Add``, ``Mul``, ``Sub``, ...) of constants folded, or of sizes read with
        ``Shape`` (:meth:`_shape_arithmetic`); None where an input is data."""
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        return self._shape_arithmetic(node, inputs, where)

    def _shape_arithmetic(self, node, inputs, where):
        """``Mul``/``Add`` of sizes: PyTorch's dynamo exporter computes the hidden width of a recurrent
        output as ``directions * hidden`` from its ``Shape``. Numbers are folded; a size known only at
        run time (the batch) times 1, or plus 0, is itself. None where no input is a shape."""
        if not any(isinstance(v, _Shape) for v in inputs) or not all(isinstance(v, (_Shape, _Const)) for v in inputs):
            return None
        values = [self._shape_const(v) for v in inputs]
        if self._all_const(values):
            return self._fold(node, values, where)
        neutral = {"Mul": 1, "Add": 0}.get(node.op_type)
        if len(values) == 2 and neutral is not None:
            for x, c in (values, values[::-1]):
                if (isinstance(x, _Shape) and isinstance(c, _Const) and c.value.size == 1
                        and c.value.ndim <= (0 if x.scalar else 1) and int(c.value.reshape(-1)[0]) == neutral):
                    return x
        raise _Refuse(f"{where}: {node.op_type} of sizes known only at run time is not supported")

    def _op_Equal(self, node, inputs, attrs, where):
        values = [self._shape_const(v) for v in inputs]
        if self._all_const(values):
            return self._fold(node, values, where)
        raise _Refuse(f"{where}: Equal of values known only at run time")

    def _op_If(self, node, inputs, attrs, where):
        """An If whose condition is a constant (PyTorch's export of ``squeeze(dim)`` on a dynamic
        shape): the branch taken is followed inline."""
        cond = inputs[0]
        if not isinstance(cond, _Const) or cond.value.size != 1:
            raise _Refuse(f"{where}: If on a condition known only at run time")
        branch = attrs["then_branch" if bool(cond.value.reshape(-1)[0]) else "else_branch"]
        from onnx import numpy_helper

        for init in branch.initializer:
            self.env[init.name] = _Const(numpy_helper.to_array(init))
        for inner in branch.node:
            inner_where = f"node {inner.name or inner.output[0]!r} ({inner.op_type}, in {where})"
            values = [self.env.get(n, _UNKNOWN) if n else None for n in inner.input]
            if any(isinstance(v, _Unknown) for v in values):
                raise _Refuse(f"{inner_where}: reads a value edgernn cannot follow")
            for name, value in zip(inner.output, self._node(inner, values, inner_where)):
                if name:
                    self.env[name] = value
        return [self.env.get(o.name, _UNKNOWN) for o in branch.output]

    def _op_Expand(self, node, inputs, attrs, where):
        """Expand of a scalar fill to a shape: the zero states some exporters (tf2onnx) build."""
        x, shape = inputs
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        value = x.value if isinstance(x, _Fill) else (x.value.reshape(-1) if isinstance(x, _Const) else None)
        if value is None or (isinstance(value, np.ndarray) and (value.size != 1 and np.any(value != value.flat[0]))):
            raise _Refuse(f"{where}: Expand of data is not supported")
        fill = float(value if not isinstance(value, np.ndarray) else value.flat[0])
        if isinstance(shape, _Shape):
            return _Fill(fill, shape.dims)
        raise _Refuse(f"{where}: Expand to a shape edgernn cannot follow")
