/* The bill's bulk per-packet work in C: chain head, RFC 9162 leaf hashes and Merkle root,
 * and the CBOR encoding of the bill's manifest.
 *
 * A 2,880-packet bill hashes ~17,000 times; from Python each hashlib call costs 0.3-0.4 us
 * of interpreter work around a 0.1 us digest. These functions take the whole list at once
 * and call OpenSSL's SHA-256 (SHA-NI where the CPU has it) directly. They compute exactly
 * what meterseal.billing.hashing's Python functions compute (property tests hold them to
 * it); hashing.py falls back to those when this module is not built.
 *
 * The GIL is held throughout: the inputs are borrowed from a caller's list, which another
 * thread could change under us, and a bill's hashing takes about a millisecond.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co.: the cheapest entry for short inputs */
#include <Python.h>
#include <openssl/sha.h>
#include <assert.h>

#define HASH 32
#define MAX_DEPTH 64 /* a stack entry per bit of a Py_ssize_t leaf count */

static const unsigned char LEAF_PREFIX = 0x00;
static const unsigned char NODE_PREFIX = 0x01;

/* The items of `seq` as a fast sequence whose every item is bytes; NULL with an error set. */
static PyObject *bytes_items(PyObject *seq, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "%s: item %zd is not bytes", what, i);
            Py_DECREF(fast);
            return NULL;
        }
    }
    return fast;
}

/* SHA256_Init/Update/Final, not the one-shot SHA256(): OpenSSL 3 implements that through
 * EVP_Q_digest, which fetches the algorithm on every call (~4x the cost of a short digest). */
static void digest(const void *data, size_t size, unsigned char *out) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, size);
    SHA256_Final(out, &ctx);
}

static void prefixed(unsigned char prefix, const char *data, Py_ssize_t size, unsigned char *out) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &prefix, 1);
    SHA256_Update(&ctx, data, (size_t)size);
    SHA256_Final(out, &ctx);
}

/* h_i = SHA-256(h_{i-1} || SHA-256(packet)), in place in `head`. */
static void chain_step(unsigned char *head, const char *data, Py_ssize_t size) {
    unsigned char link[2 * HASH];
    memcpy(link, head, HASH);
    digest(data, (size_t)size, link + HASH);
    digest(link, sizeof link, head);
}

/* The chain over `packets` from h0 = SHA-256(context); leaf hashes into `leaves` if not NULL. */
static PyObject *chain(PyObject *args, int with_leaves) {
    Py_buffer context;
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "y*O", &context, &packets)) {
        return NULL;
    }
    unsigned char head[HASH];
    digest(context.buf, (size_t)context.len, head);
    PyBuffer_Release(&context);
    PyObject *fast = bytes_items(packets, "packets");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    PyObject *leaves = with_leaves ? PyList_New(n) : NULL;
    if (with_leaves && leaves == NULL) {
        Py_DECREF(fast);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *data = PyBytes_AS_STRING(items[i]);
        Py_ssize_t size = PyBytes_GET_SIZE(items[i]);
        if (leaves != NULL) {
            PyObject *leaf = PyBytes_FromStringAndSize(NULL, HASH);
            if (leaf == NULL) {
                Py_DECREF(leaves);
                Py_DECREF(fast);
                return NULL;
            }
            prefixed(LEAF_PREFIX, data, size, (unsigned char *)PyBytes_AS_STRING(leaf));
            PyList_SET_ITEM(leaves, i, leaf);
        }
        chain_step(head, data, size);
    }
    Py_DECREF(fast);
    PyObject *head_bytes = PyBytes_FromStringAndSize((const char *)head, HASH);
    if (leaves == NULL) {
        return head_bytes;
    }
    if (head_bytes == NULL) {
        Py_DECREF(leaves);
        return NULL;
    }
    return Py_BuildValue("(NN)", head_bytes, leaves);
}

static PyObject *chain_head(PyObject *self, PyObject *args) {
    (void)self;
    return chain(args, 0);
}

static PyObject *chain_and_leaves(PyObject *self, PyObject *args) {
    (void)self;
    return chain(args, 1);
}

static PyObject *leaf_hashes(PyObject *self, PyObject *packets) {
    (void)self;
    PyObject *fast = bytes_items(packets, "packets");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    PyObject *leaves = PyList_New(n);
    for (Py_ssize_t i = 0; leaves != NULL && i < n; i++) {
        PyObject *leaf = PyBytes_FromStringAndSize(NULL, HASH);
        if (leaf == NULL) {
            Py_CLEAR(leaves);
            break;
        }
        prefixed(LEAF_PREFIX, PyBytes_AS_STRING(items[i]), PyBytes_GET_SIZE(items[i]),
                 (unsigned char *)PyBytes_AS_STRING(leaf));
        PyList_SET_ITEM(leaves, i, leaf);
    }
    Py_DECREF(fast);
    return leaves;
}

static void node(const unsigned char *left, const unsigned char *right, unsigned char *out) {
    unsigned char data[1 + 2 * HASH];
    data[0] = NODE_PREFIX;
    memcpy(data + 1, left, HASH);
    memcpy(data + 1 + HASH, right, HASH);
    digest(data, sizeof data, out);
}

/* RFC 9162 MTH of 32-byte leaf hashes: perfect subtrees merged like a binary counter, then
 * folded right to left, which is the recursive definition's split at the largest power of 2. */
static PyObject *merkle_root(PyObject *self, PyObject *hashes) {
    (void)self;
    PyObject *fast = bytes_items(hashes, "leaf hashes");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    unsigned char stack[MAX_DEPTH][HASH];
    Py_ssize_t widths[MAX_DEPTH];
    int top = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyBytes_GET_SIZE(items[i]) != HASH) {
            PyErr_Format(PyExc_ValueError, "leaf hash %zd is not %d bytes", i, HASH);
            Py_DECREF(fast);
            return NULL;
        }
        memcpy(stack[top], PyBytes_AS_STRING(items[i]), HASH);
        widths[top++] = 1;
        while (top > 1 && widths[top - 1] == widths[top - 2]) {
            node(stack[top - 2], stack[top - 1], stack[top - 2]);
            widths[top - 2] *= 2;
            top--;
        }
    }
    Py_DECREF(fast);
    unsigned char root[HASH];
    if (top == 0) {
        digest("", 0, root);
    } else {
        memcpy(root, stack[--top], HASH);
        while (top > 0) {
            node(stack[--top], root, root);
        }
    }
    return PyBytes_FromStringAndSize((const char *)root, HASH);
}

/* The length of a CBOR head whose argument is `value` (shortest form). */
static Py_ssize_t head_size(unsigned long long value) {
    return value < 24 ? 1 : value < 0x100 ? 2 : value < 0x10000 ? 3 : value < 0x100000000ULL ? 5 : 9;
}

/* Write a CBOR head (major type bits in `major`) for `value` in the shortest form. */
static unsigned char *put_head(unsigned char *out, unsigned char major, unsigned long long value) {
    Py_ssize_t size = head_size(value);
    static const unsigned char extra[] = {0, 24, 25, 0, 26, 0, 0, 0, 27};
    if (size == 1) {
        *out++ = (unsigned char)(major | value);
        return out;
    }
    *out++ = (unsigned char)(major | extra[size - 1]);
    for (Py_ssize_t shift = (size - 2) * 8; shift >= 0; shift -= 8) {
        *out++ = (unsigned char)(value >> shift);
    }
    return out;
}

/* One manifest entry's parts, or 0 if it is off the shape this encoder writes. */
static int entry_parts(PyObject *meter, PyObject *counter, PyObject *leaf, const char **text,
                       Py_ssize_t *text_size, unsigned long long *count) {
    if (!PyUnicode_CheckExact(meter) || !PyLong_CheckExact(counter) || !PyBytes_CheckExact(leaf) ||
        PyBytes_GET_SIZE(leaf) != HASH) {
        return 0;
    }
    *count = PyLong_AsUnsignedLongLong(counter); /* negative or >= 2**64: an error, not ours */
    if (*count == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *text = PyUnicode_AsUTF8AndSize(meter, text_size); /* lone surrogates: not ours either */
    if (*text == NULL) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* encode_manifest(meter_ids, counters, leaf_hashes): the manifest's CBOR, or None for
 * anything off the shape [[text, uint, bstr .size 32], ...] (the caller's Python encoder
 * then decides what that input gives). Two passes: validate and size, then write. */
static PyObject *encode_manifest(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *columns[3];
    if (!PyArg_ParseTuple(args, "OOO", &columns[0], &columns[1], &columns[2])) {
        return NULL;
    }
    PyObject *fast[3] = {NULL, NULL, NULL};
    PyObject *result = NULL;
    for (int c = 0; c < 3; c++) {
        fast[c] = PySequence_Fast(columns[c], "manifest column");
        if (fast[c] == NULL) {
            goto done;
        }
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast[0]);
    if (PySequence_Fast_GET_SIZE(fast[1]) != n || PySequence_Fast_GET_SIZE(fast[2]) != n) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject **meters = PySequence_Fast_ITEMS(fast[0]);
    PyObject **counters = PySequence_Fast_ITEMS(fast[1]);
    PyObject **leaves = PySequence_Fast_ITEMS(fast[2]);
    const char *text;
    Py_ssize_t text_size;
    unsigned long long count;
    Py_ssize_t total = head_size((unsigned long long)n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!entry_parts(meters[i], counters[i], leaves[i], &text, &text_size, &count)) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        Py_ssize_t entry = 1 + head_size((unsigned long long)text_size) + text_size +
                           head_size(count) + 2 + HASH;
        if (total > PY_SSIZE_T_MAX - entry) { /* only reachable where Py_ssize_t is 32 bits */
            result = Py_NewRef(Py_None);
            goto done;
        }
        total += entry;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        goto done;
    }
    unsigned char *start = (unsigned char *)PyBytes_AS_STRING(result);
    unsigned char *out = put_head(start, 0x80, (unsigned long long)n);
    /* The GIL is held and nothing here runs Python code: the entries are as the first pass
     * found them, so each still has its parts. */
    for (Py_ssize_t i = 0; i < n; i++) {
        entry_parts(meters[i], counters[i], leaves[i], &text, &text_size, &count);
        *out++ = 0x83;
        out = put_head(out, 0x60, (unsigned long long)text_size);
        memcpy(out, text, (size_t)text_size);
        out += text_size;
        out = put_head(out, 0x00, count);
        *out++ = 0x58;
        *out++ = HASH;
        memcpy(out, PyBytes_AS_STRING(leaves[i]), HASH);
        out += HASH;
    }
    assert(out == start + total);
done:
    for (int c = 0; c < 3; c++) {
        Py_XDECREF(fast[c]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"chain_head", chain_head, METH_VARARGS,
     "chain_head(context, packets): the hash chain's last link over the packets, in order."},
    {"chain_and_leaves", chain_and_leaves, METH_VARARGS,
     "chain_and_leaves(context, packets): (chain head, RFC 9162 leaf hashes) in one pass."},
    {"leaf_hashes", leaf_hashes, METH_O, "leaf_hashes(packets): RFC 9162 leaf hashes."},
    {"merkle_root", merkle_root, METH_O,
     "merkle_root(leaf_hashes): RFC 9162 MTH of 32-byte leaf hashes."},
    {"encode_manifest", encode_manifest, METH_VARARGS,
     "encode_manifest(meter_ids, counters, leaf_hashes): the manifest's CBOR, or None if off shape."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hashes", "The bill's bulk per-packet work in C: SHA-256 (OpenSSL) and the manifest's CBOR.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hashes(void) { return PyModule_Create(&module); }
