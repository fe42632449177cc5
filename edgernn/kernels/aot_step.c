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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <stdint.h>

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

static PyMethodDef methods[] = {
    {"chain_step", (PyCFunction)(void (*)(void))chain_step, METH_FASTCALL,
     "chain_step(model, x, y, memory) -> int: one step of every stream (see edgernn.kernels.chain)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_edgernn_step", "edgernn's fused step, compiled ahead of time for this CPU.", -1, methods,
};

PyMODINIT_FUNC PyInit__edgernn_step(void)
{
    import_array();
    return PyModule_Create(&definition);
}
