/* meterseal.crypto.fixed's single-pass reader of a meter's COSE_Sign1 over a plain reading,
 * in C: an audit reads 2,880 of them per bill, and the Python reader's ~5 us each is a third
 * of what a signature check costs.
 *
 * It mirrors fixed._signed_reading byte for byte: the same fixed parts, every integer and
 * length in its shortest form, the same order, nothing after the signature. Anything else,
 * including any read past the end, gives None and the caller takes the general path; the
 * differential tests in tests/crypto/test_fixed_native.py hold the two readers to the same
 * answer for valid, mutated and random bytes. Nothing read here is trusted before the
 * caller has checked the meter's signature.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const unsigned char *data;
    Py_ssize_t size;
} Bytes;

/* An integer head at *i (major type given by `base`: 0x00 unsigned, 0x20 negative), shortest
 * form only; advances *i. Returns 0 when the bytes leave the shape. */
static int uint_at(Bytes b, Py_ssize_t *i, unsigned char base, uint64_t *value) {
    if (*i >= b.size) {
        return 0;
    }
    int head = (int)b.data[*i] - base;
    if (0 <= head && head < 0x18) {
        *value = (uint64_t)head;
        *i += 1;
        return 1;
    }
    int width;
    uint64_t low;
    switch (head) {
    case 0x18: width = 1; low = 0x18; break;
    case 0x19: width = 2; low = 0x100; break;
    case 0x1A: width = 4; low = 0x10000; break;
    case 0x1B: width = 8; low = 0x100000000ULL; break;
    default: return 0;
    }
    if (*i + 1 + width > b.size) {
        return 0;
    }
    uint64_t v = 0;
    for (int k = 1; k <= width; k++) {
        v = (v << 8) | b.data[*i + k];
    }
    if (v < low) {
        return 0;
    }
    *value = v;
    *i += 1 + width;
    return 1;
}

/* The content span [*start, *end) of the byte (major 2) or text (3) string at i: lengths
 * below 65,536 in their shortest form, as fixed._string accepts. */
static int string_at(Bytes b, Py_ssize_t i, int major, Py_ssize_t *start, Py_ssize_t *end) {
    if (i >= b.size) {
        return 0;
    }
    int head = (int)b.data[i] - (major << 5);
    if (0 <= head && head < 0x18) {
        *start = i + 1;
        *end = *start + head;
    } else if (head == 0x18 && i + 1 < b.size && b.data[i + 1] >= 0x18) {
        *start = i + 2;
        *end = *start + b.data[i + 1];
    } else if (head == 0x19 && i + 2 < b.size && b.data[i + 1]) {
        *start = i + 3;
        *end = *start + ((Py_ssize_t)b.data[i + 1] << 8 | b.data[i + 2]);
    } else {
        return 0;
    }
    return *end <= b.size;
}

static int byte_is(Bytes b, Py_ssize_t i, unsigned char value) {
    return i < b.size && b.data[i] == value;
}

static int starts_with(Bytes b, Py_ssize_t i, const char *prefix, Py_ssize_t length) {
    return i + length <= b.size && memcmp(b.data + i, prefix, (size_t)length) == 0;
}

/* One `key: uint` entry of the reading's map at *i (the key a small unsigned integer). */
static int entry(Bytes b, Py_ssize_t *i, unsigned char key, uint64_t *value) {
    if (!byte_is(b, *i, key)) {
        return 0;
    }
    *i += 1;
    return uint_at(b, i, 0x00, value);
}

static const char SIG_STRUCTURE_HEAD[] = "\x84\x6aSignature1"; /* array(4), "Signature1" */
static const char READING_HEAD[] = "\xa6\x00\x01\x01";         /* map(6), version: 1 */
static const char IAT_HEAD[] = "\x0f\xa1\x06";                 /* 15: {6: iat} */

/* The parts of a signed reading, or None:
 * (alg head argument, kid, sent_at, signature, to_be_signed, meter_id, counter, timestamp,
 *  interval, energy_wh); the caller turns the first into the (negative) alg and builds the
 * Reading, which validates the values' ranges. */
static PyObject *signed_reading(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "signed_reading takes bytes");
        return NULL;
    }
    Bytes b = {(const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)};
    Py_ssize_t p_start, p_end, k_start, k_end, r_start, r_end, m_start, m_end, s_start, s_end;
    Py_ssize_t i;
    uint64_t alg, sent_at, counter, timestamp, interval, energy;
    if (!byte_is(b, 0, 0xD2) || !byte_is(b, 1, 0x84) || !string_at(b, 2, 2, &p_start, &p_end)) {
        Py_RETURN_NONE;
    }
    /* Protected header: {1: alg (negative), 4: kid, 15: {6: iat}} */
    if (!byte_is(b, p_start, 0xA3) || !byte_is(b, p_start + 1, 0x01)) {
        Py_RETURN_NONE;
    }
    i = p_start + 2;
    if (!uint_at(b, &i, 0x20, &alg) || !byte_is(b, i, 0x04) ||
        !string_at(b, i + 1, 2, &k_start, &k_end) || !starts_with(b, k_end, IAT_HEAD, 3)) {
        Py_RETURN_NONE;
    }
    i = k_end + 3;
    if (!uint_at(b, &i, 0x00, &sent_at) || i != p_end || !byte_is(b, i, 0xA0) ||
        !string_at(b, i + 1, 2, &r_start, &r_end)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t unprotected = i;
    /* The reading: schema 1, keys 0…5 in order, no phasor. */
    if (!starts_with(b, r_start, READING_HEAD, 4) || !string_at(b, r_start + 4, 3, &m_start, &m_end)) {
        Py_RETURN_NONE;
    }
    i = m_end;
    if (!entry(b, &i, 2, &counter) || !entry(b, &i, 3, &timestamp) ||
        !entry(b, &i, 4, &interval) || !entry(b, &i, 5, &energy) || i != r_end ||
        !string_at(b, r_end, 2, &s_start, &s_end) || s_end != b.size) {
        Py_RETURN_NONE;
    }
    PyObject *kid = PyUnicode_DecodeUTF8((const char *)b.data + k_start, k_end - k_start, "strict");
    PyObject *meter_id = kid == NULL ? NULL
        : PyUnicode_DecodeUTF8((const char *)b.data + m_start, m_end - m_start, "strict");
    if (meter_id == NULL) { /* the second is tried only if the first decoded */
        Py_XDECREF(kid);
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            Py_RETURN_NONE; /* not UTF-8: the general path decides */
        }
        return NULL;
    }
    /* Sig_structure = ["Signature1", protected, h'', payload]: the protected and payload
     * byte strings copied with their heads. */
    Py_ssize_t protected_len = p_end - 2, payload_len = r_end - (unprotected + 1);
    Py_ssize_t head_len = (Py_ssize_t)sizeof SIG_STRUCTURE_HEAD - 1;
    PyObject *tbs = PyBytes_FromStringAndSize(NULL, head_len + protected_len + 1 + payload_len);
    if (tbs == NULL) {
        Py_DECREF(kid);
        Py_DECREF(meter_id);
        return NULL;
    }
    char *out = PyBytes_AS_STRING(tbs);
    memcpy(out, SIG_STRUCTURE_HEAD, (size_t)head_len);
    memcpy(out + head_len, b.data + 2, (size_t)protected_len);
    out[head_len + protected_len] = 0x40; /* external_aad: h'' */
    memcpy(out + head_len + protected_len + 1, b.data + unprotected + 1, (size_t)payload_len);
    return Py_BuildValue(
        "(KNKy#NNKKKK)", (unsigned long long)alg, kid, (unsigned long long)sent_at,
        (const char *)b.data + s_start, s_end - s_start, tbs, meter_id,
        (unsigned long long)counter, (unsigned long long)timestamp,
        (unsigned long long)interval, (unsigned long long)energy);
}

static PyMethodDef methods[] = {
    {"signed_reading", signed_reading, METH_O,
     "signed_reading(data): the parts of our meters' COSE_Sign1 of a plain reading, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fixed", "fixed.signed_reading's single-pass reader in C.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fixed(void) { return PyModule_Create(&module); }
