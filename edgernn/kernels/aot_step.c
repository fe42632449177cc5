/* The fused step as a CPython extension module: the kernel Numba compiled ahead of time, called
 * through a few lines of C instead of Numba's dispatcher.
 *
 * Built on the device by edgernn.kernels.aot.build_step(): Numba compiles
 * edgernn.kernels.chain._chain_step for this CPU into an object file exporting
 * `edgernn_chain_step`, which is linked with this file. Importing the result needs neither Numba
 * nor LLVM: a fresh process steps a stream without `import numba`.
 *
 * chain_step(model, x, y, memory) -> int behaves as the jitted kernel does: arrays that are not
 * float32, native byte order, aligned and C-contiguous with the right number of dimensions (y and
 * memory writeable) raise TypeError, as Numba's dispatcher raises for a signature that does not
 * match; the kernel itself checks sizes and returns nonzero to refuse. The GIL is released while
 * the kernel runs, as `nogil=True` does.
 *
 * bind(model, y, memory, fallback) -> a stream's `step(x_t, out=None)` as one C callable (see
 * BoundStep below): what the stream's Python closure over chain_step does, without its Python
 * frame (tools/bench's "s.step / kernel" row: 1.01-1.29x through the closure, docs/benchmarks.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <stddef.h>
#include <stdint.h>
#include <structmember.h>

/* Numba's calling convention (numba/core/callconv.py, CPUCallConv): a status (0: returned
 * normally), a pointer to the return value, a pointer to exception info, then each argument
 * flattened into the fields of its data model -- for an array: meminfo, parent, nitems, itemsize,
 * data, shape[ndim], strides[ndim] (numba/core/datamodel/models.py, ArrayModel). */
#define ARRAY_1D void *, void *, int64_t, int64_t, float *, int64_t, int64_t
#define ARRAY_2D void *, void *, int64_t, int64_t, float *, int64_t, int64_t, int64_t, int64_t
extern int32_t edgernn_chain_step(int64_t *result, void **excinfo, ARRAY_1D, ARRAY_2D, ARRAY_2D, ARRAY_1D);

#define PASS_1D(a) NULL, NULL, (int64_t)PyArray_SIZE(a), (int64_t)4, (float *)PyArray_DATA(a), \
    (int64_t)PyArray_DIM(a, 0), (int64_t)PyArray_STRIDE(a, 0)
#define PASS_2D(a) NULL, NULL, (int64_t)PyArray_SIZE(a), (int64_t)4, (float *)PyArray_DATA(a), \
    (int64_t)PyArray_DIM(a, 0), (int64_t)PyArray_DIM(a, 1), (int64_t)PyArray_STRIDE(a, 0), \
    (int64_t)PyArray_STRIDE(a, 1)

/* Numba lowers every `reshape` to a call of this helper (in its own runtime library, which this
 * module does not link): the strides of a view of `dims`/`strides` as `newdims`, or 0 if no view
 * can be made. The step kernel only reshapes contiguous 1-D slices of its weights, so this
 * accepts exactly C-contiguous sources (any other makes the kernel raise, which chain_step
 * reports) and gives C-order strides. */
__attribute__((visibility("hidden"))) int numba_attempt_nocopy_reshape(
    npy_intp nd, const npy_intp *dims, const npy_intp *strides, npy_intp newnd, const npy_intp *newdims,
    npy_intp *newstrides, npy_intp itemsize, int is_f_order)
{
    npy_intp expected = itemsize, size = 1, newsize = 1, i;
    (void)is_f_order;
    for (i = nd - 1; i >= 0; i--) {
        if (dims[i] != 1 && strides[i] != expected) {
            return 0;
        }
        expected *= dims[i];
        size *= dims[i];
    }
    for (i = 0; i < newnd; i++) {
        newsize *= newdims[i];
    }
    if (newsize != size) {
        return 0;
    }
    expected = itemsize;
    for (i = newnd - 1; i >= 0; i--) {
        newstrides[i] = expected;
        expected *= newdims[i];
    }
    return 1;
}

/* A float32 array of `ndim` dimensions the compiled signature takes as it is. */
static int plain(PyObject *object, int ndim, int writeable)
{
    PyArrayObject *array = (PyArrayObject *)object;
    int flags = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | (writeable ? NPY_ARRAY_WRITEABLE : 0);
    return PyArray_Check(object) && PyArray_NDIM(array) == ndim && PyArray_TYPE(array) == NPY_FLOAT32
           && PyArray_ISNOTSWAPPED(array) && PyArray_CHKFLAGS(array, flags);
}

static PyObject *chain_step(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t result = 0;
    void *excinfo = NULL;
    int32_t status;
    PyArrayObject *model, *x, *y, *memory;
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "chain_step takes 4 arguments (model, x, y, memory), got %zd", nargs);
        return NULL;
    }
    if (!plain(args[0], 1, 0) || !plain(args[1], 2, 0) || !plain(args[2], 2, 1) || !plain(args[3], 1, 1)) {
        PyErr_SetString(PyExc_TypeError, "chain_step takes float32 C-contiguous arrays: model (n,), x (B, F), "
                                         "writeable y (B, O) and memory (m,)");
        return NULL;
    }
    model = (PyArrayObject *)args[0];
    x = (PyArrayObject *)args[1];
    y = (PyArrayObject *)args[2];
    memory = (PyArrayObject *)args[3];
    Py_BEGIN_ALLOW_THREADS
    status = edgernn_chain_step(&result, &excinfo, PASS_1D(model), PASS_2D(x), PASS_2D(y), PASS_1D(memory));
    Py_END_ALLOW_THREADS
    if (status != 0) {
        PyErr_Format(PyExc_RuntimeError, "edgernn: the ahead-of-time step kernel failed (status %d)", (int)status);
        return NULL;
    }
    return PyLong_FromLongLong(result);
}

/* A stream's fused step bound to its arrays: calling it is `step(x_t, out=None)` of
 * edgernn.runtime.Stream. The fast case -- x_t a float32 C-contiguous (B, F) array, out None (the
 * stream's own y, returned as a copy) or a writeable float32 C-contiguous (B, O) array, passed
 * by position or as out= -- runs the kernel here. Anything else (other types, shapes the kernel
 * refuses, other arguments) goes to `fallback`, the stream's Python step, which converts or
 * refuses it with the stream's own errors. `stepped` is set by every step completed here (the
 * stream's forecast needs to know that it has an output). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *model, *own_y, *memory, *fallback;
    int stepped;
} BoundStep;

static PyObject *bound_step_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    BoundStep *self = (BoundStep *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t keywords = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *out, *target;
    int64_t result = 0;
    void *excinfo = NULL;
    int32_t status;
    if (nargs == 1 && keywords == 0) {
        out = Py_None;
    } else if ((nargs == 2 && keywords == 0)
               || (nargs == 1 && keywords == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "out") == 0)) {
        out = args[1];
    } else {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    target = out == Py_None ? self->own_y : out;
    if (!plain(args[0], 2, 0) || !plain(target, 2, 1)) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    Py_BEGIN_ALLOW_THREADS
    status = edgernn_chain_step(&result, &excinfo, PASS_1D((PyArrayObject *)self->model), PASS_2D((PyArrayObject *)args[0]),
                                PASS_2D((PyArrayObject *)target), PASS_1D((PyArrayObject *)self->memory));
    Py_END_ALLOW_THREADS
    if (status != 0) {
        PyErr_Format(PyExc_RuntimeError, "edgernn: the ahead-of-time step kernel failed (status %d)", (int)status);
        return NULL;
    }
    if (result != 0) { /* a shape the kernel refused, nothing written: the stream reports it */
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    self->stepped = 1;
    if (out == Py_None) {
        return PyArray_NewCopy((PyArrayObject *)self->own_y, NPY_CORDER);
    }
    Py_INCREF(out);
    return out;
}

static int bound_step_traverse(BoundStep *self, visitproc visit, void *arg)
{
    Py_VISIT(self->model);
    Py_VISIT(self->own_y);
    Py_VISIT(self->memory);
    Py_VISIT(self->fallback); /* the stream's closure, which refers to the stream, which holds this */
    return 0;
}

static int bound_step_clear(BoundStep *self)
{
    Py_CLEAR(self->model);
    Py_CLEAR(self->own_y);
    Py_CLEAR(self->memory);
    Py_CLEAR(self->fallback);
    return 0;
}

static void bound_step_dealloc(BoundStep *self)
{
    PyObject_GC_UnTrack(self);
    bound_step_clear(self);
    PyObject_GC_Del(self);
}

static PyMemberDef bound_step_members[] = {
    {"stepped", T_INT, offsetof(BoundStep, stepped), 0, "1 once a step has completed here (0 again after the stream's reset)"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject BoundStepType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_edgernn_step.BoundStep",
    .tp_basicsize = sizeof(BoundStep),
    .tp_dealloc = (destructor)bound_step_dealloc,
    .tp_vectorcall_offset = offsetof(BoundStep, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "step(x_t, out=None): one timestep of a stream, (batch, features) -> (batch, outputs); with out, "
              "nothing is allocated (edgernn.runtime.Stream.step).",
    .tp_traverse = (traverseproc)bound_step_traverse,
    .tp_clear = (inquiry)bound_step_clear,
    .tp_members = bound_step_members,
};

static PyObject *bind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    BoundStep *self;
    (void)module;
    if (nargs != 4 || !plain(args[0], 1, 0) || !plain(args[1], 2, 1) || !plain(args[2], 1, 1)
        || !PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "bind takes model (n,), a writeable y (B, O) and memory (m,), float32 "
                                         "C-contiguous, and a callable fallback step");
        return NULL;
    }
    self = PyObject_GC_New(BoundStep, &BoundStepType);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = bound_step_call;
    Py_INCREF(args[0]);
    self->model = args[0];
    Py_INCREF(args[1]);
    self->own_y = args[1];
    Py_INCREF(args[2]);
    self->memory = args[2];
    Py_INCREF(args[3]);
    self->fallback = args[3];
    self->stepped = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyMethodDef methods[] = {
    {"chain_step", (PyCFunction)(void (*)(void))chain_step, METH_FASTCALL,
     "chain_step(model, x, y, memory) -> int: one step of every stream (see edgernn.kernels.chain)."},
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "bind(model, y, memory, fallback) -> a stream's step(x_t, out=None) as one C callable (see aot_step.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_edgernn_step", "edgernn's fused step, compiled ahead of time for this CPU.", -1, methods,
};

PyMODINIT_FUNC PyInit__edgernn_step(void)
{
    import_array();
    if (PyType_Ready(&BoundStepType) < 0) {
        return NULL;
    }
    return PyModule_Create(&definition);
}
