/* The OTLP encoder's hot path in C: one event's span and its child spans to the bytes of
 * consecutive ScopeSpans.spans entries, exactly what workers/telemetry/otlp.py's Encoder.event
 * writes (tests/unit/telemetry/test_otlp_native.py compares them byte for byte).
 *
 * Why: encoding is the largest part of what tracing every event costs the worker (~20 us an
 * event in Python, docs/benchmarks.md); here it is about a microsecond. What this file does not
 * handle (span events, an exception as a child's error, attribute values other than str, bool,
 * int, float and bytes, non-tuple children) makes it return None, and the Python encoder does
 * the whole event: the same bytes, slower. Built by `pip install -e .` (pyproject.toml,
 * optional: without a compiler the Python encoder does everything).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define UNSUPPORTED (-2) /* not an error: the Python encoder takes this event */

typedef struct {
    unsigned char *p;
    Py_ssize_t n, cap;
} Buf;

static PyObject *s_trace_id, *s_span_id, *s_parent_id, *s_parent_remote, *s_state, *s_name,
    *s_kind, *s_start, *s_end, *s_shared, *s_attributes, *s_events, *s_links, *s_status,
    *s_remote;

static int grow(Buf *b, Py_ssize_t extra) {
    if (b->n + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 2048;
    while (cap < b->n + extra)
        cap *= 2;
    unsigned char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const void *src, Py_ssize_t n) {
    if (grow(b, n))
        return -1;
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

static int put1(Buf *b, unsigned char c) { return put(b, &c, 1); }

static int vlen(unsigned long long v) {
    int n = 1;
    while (v > 0x7f) {
        v >>= 7;
        n++;
    }
    return n;
}

static int varint(Buf *b, unsigned long long v) {
    unsigned char t[10];
    int i = 0;
    while (v > 0x7f) {
        t[i++] = (unsigned char)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    t[i++] = (unsigned char)v;
    return put(b, t, i);
}

static int le64(Buf *b, unsigned long long v) {
    unsigned char t[8];
    for (int i = 0; i < 8; i++, v >>= 8)
        t[i] = (unsigned char)(v & 0xff);
    return put(b, t, 8);
}

static int be64(Buf *b, unsigned long long v) {
    unsigned char t[8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        t[i] = (unsigned char)(v & 0xff);
    return put(b, t, 8);
}

static int le32(Buf *b, unsigned int v) {
    unsigned char t[4];
    for (int i = 0; i < 4; i++, v >>= 8)
        t[i] = (unsigned char)(v & 0xff);
    return put(b, t, 4);
}

/* A length-delimited field: tag, length, bytes. */
static int field(Buf *b, unsigned char tag, const char *s, Py_ssize_t n) {
    if (put1(b, tag) || varint(b, (unsigned long long)n))
        return -1;
    return put(b, s, n);
}

/* An int attribute of ``obj`` as 64 bits (Python's ``to_bytes(8)``/``struct '<Q'`` inputs). */
static int u64_attr(PyObject *obj, PyObject *name, unsigned long long *out) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    if (!PyLong_Check(v)) {
        Py_DECREF(v);
        return UNSUPPORTED;
    }
    *out = PyLong_AsUnsignedLongLongMask(v);
    Py_DECREF(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int u64_of(PyObject *v, unsigned long long *out) {
    if (!PyLong_Check(v))
        return UNSUPPORTED;
    *out = PyLong_AsUnsignedLongLongMask(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int trace_bytes(PyObject *v, unsigned char out[16]) {
    if (!PyLong_Check(v))
        return UNSUPPORTED;
    return _PyLong_AsByteArray((PyLongObject *)v, out, 16, 0, 0) ? -1 : 0;
}

static int truthy_attr(PyObject *obj, PyObject *name, PyObject **out) {
    /* a new reference in *out, or NULL when the attribute is None or empty */
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int t = PyObject_IsTrue(v);
    if (t < 0) {
        Py_DECREF(v);
        return -1;
    }
    if (!t) {
        Py_DECREF(v);
        v = NULL;
    }
    *out = v;
    return 0;
}

/* A Span.attributes field (KeyValue, field 9) for one key and value. */
static int attribute(Buf *b, PyObject *key, PyObject *value) {
    Py_ssize_t kn, sn = 0;
    const char *ks, *ss = NULL;
    unsigned long long u = 0;
    double d;
    int kind; /* 0 str, 1 bool, 2 int, 3 float, 4 bytes */
    Py_ssize_t any; /* the AnyValue body's length */
    if (!PyUnicode_CheckExact(key))
        return UNSUPPORTED;
    ks = PyUnicode_AsUTF8AndSize(key, &kn);
    if (ks == NULL)
        return -1;
    if (PyUnicode_CheckExact(value)) {
        kind = 0;
        ss = PyUnicode_AsUTF8AndSize(value, &sn);
        if (ss == NULL)
            return -1;
        any = 1 + vlen((unsigned long long)sn) + sn;
    } else if (PyBool_Check(value)) {
        kind = 1;
        any = 2;
    } else if (PyLong_CheckExact(value)) {
        kind = 2;
        u = PyLong_AsUnsignedLongLongMask(value);
        if (PyErr_Occurred())
            return -1;
        any = 1 + vlen(u);
    } else if (PyFloat_CheckExact(value)) {
        kind = 3;
        d = PyFloat_AS_DOUBLE(value);
        memcpy(&u, &d, 8);
        any = 9;
    } else if (PyBytes_CheckExact(value)) {
        kind = 4;
        ss = PyBytes_AS_STRING(value);
        sn = PyBytes_GET_SIZE(value);
        any = 1 + vlen((unsigned long long)sn) + sn;
    } else {
        return UNSUPPORTED;
    }
    Py_ssize_t kv = 1 + vlen((unsigned long long)kn) + kn + 1 + vlen((unsigned long long)any) + any;
    if (put1(b, 0x4a) || varint(b, (unsigned long long)kv) || field(b, 0x0a, ks, kn) ||
        put1(b, 0x12) || varint(b, (unsigned long long)any))
        return -1;
    switch (kind) {
    case 0:
        return field(b, 0x0a, ss, sn);
    case 1:
        return put1(b, 0x10) || put1(b, value == Py_True ? 1 : 0);
    case 2:
        return put1(b, 0x18) || varint(b, u);
    case 3:
        return put1(b, 0x21) || le64(b, u);
    default:
        return field(b, 0x3a, ss, sn);
    }
}

static int attributes(Buf *b, PyObject *dict) {
    if (dict == NULL)
        return 0;
    if (!PyDict_Check(dict))
        return UNSUPPORTED;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &k, &v)) {
        int rc = attribute(b, k, v);
        if (rc)
            return rc;
    }
    return 0;
}

/* Span.links (field 13): TraceCtx values; flags say whether the linked span is remote. */
static int links(Buf *b, PyObject *list) {
    if (list == NULL)
        return 0;
    if (!PyList_Check(list))
        return UNSUPPORTED;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *link = PyList_GET_ITEM(list, i);
        unsigned char trace[16];
        unsigned long long span_id;
        PyObject *tid = PyObject_GetAttr(link, s_trace_id);
        if (tid == NULL)
            return -1;
        int rc = trace_bytes(tid, trace);
        Py_DECREF(tid);
        if (rc)
            return rc;
        if ((rc = u64_attr(link, s_span_id, &span_id)))
            return rc;
        PyObject *remote = PyObject_GetAttr(link, s_remote);
        if (remote == NULL)
            return -1;
        int is_remote = PyObject_IsTrue(remote);
        Py_DECREF(remote);
        if (is_remote < 0)
            return -1;
        static const unsigned char head[] = {0x6a, 33, 0x0a, 0x10};
        if (put(b, head, 4) || put(b, trace, 16) || put1(b, 0x12) || put1(b, 0x08) ||
            be64(b, span_id) || put1(b, 0x35) || le32(b, 0x100u | (is_remote ? 0x200u : 0u)))
            return -1;
    }
    return 0;
}

/* Span.status (field 15; UNSET when None) and the span flags (field 16) after it. */
static int status(Buf *b, PyObject *st, int parent_remote) {
    if (st == Py_None) {
        if (put1(b, 0x7a) || put1(b, 0x00))
            return -1;
    } else if (PyTuple_CheckExact(st) && PyTuple_GET_SIZE(st) == 2) {
        unsigned long long code;
        Py_ssize_t mn;
        int rc = u64_of(PyTuple_GET_ITEM(st, 0), &code);
        if (rc)
            return rc;
        PyObject *message = PyTuple_GET_ITEM(st, 1);
        if (!PyUnicode_CheckExact(message))
            return UNSUPPORTED;
        const char *ms = PyUnicode_AsUTF8AndSize(message, &mn);
        if (ms == NULL)
            return -1;
        Py_ssize_t body = (mn ? 1 + vlen((unsigned long long)mn) + mn : 0) + 1 + vlen(code);
        if (put1(b, 0x7a) || varint(b, (unsigned long long)body))
            return -1;
        if (mn && field(b, 0x12, ms, mn))
            return -1;
        if (put1(b, 0x18) || varint(b, code))
            return -1;
    } else {
        return UNSUPPORTED; /* an exception: the Python encoder writes its event */
    }
    return put1(b, 0x85) || put1(b, 0x01) ||
           le32(b, 0x100u | (parent_remote ? 0x200u : 0u));
}

/* A span's name (field 5) and kind (field 6). */
static int head(Buf *b, PyObject *name, PyObject *kind) {
    Py_ssize_t n;
    unsigned long long k;
    if (!PyUnicode_CheckExact(name))
        return UNSUPPORTED;
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    if (s == NULL)
        return -1;
    int rc = u64_of(kind, &k);
    if (rc)
        return rc;
    if (field(b, 0x2a, s, n) || put1(b, 0x30))
        return -1;
    return varint(b, k + 1);
}

static int times(Buf *b, unsigned long long start, unsigned long long end) {
    return put1(b, 0x39) || le64(b, start) || put1(b, 0x41) || le64(b, end);
}

/* Append ``body`` as a ScopeSpans.spans entry (field 2) to ``out``. */
static int entry(Buf *out, Buf *body) {
    if (put1(out, 0x12) || varint(out, (unsigned long long)body->n))
        return -1;
    return put(out, body->p, body->n);
}

/* One Child tuple: name, kind, start, end, shared, attributes, links, error, span id. */
static int child(Buf *b, PyObject *c, const unsigned char *trace, const Buf *under,
                 PyObject *new_id) {
    if (!PyTuple_CheckExact(c) || PyTuple_GET_SIZE(c) != 9)
        return UNSUPPORTED;
    unsigned long long start, end, span_id;
    int rc;
    if ((rc = u64_of(PyTuple_GET_ITEM(c, 2), &start)) ||
        (rc = u64_of(PyTuple_GET_ITEM(c, 3), &end)) ||
        (rc = u64_of(PyTuple_GET_ITEM(c, 8), &span_id)))
        return rc;
    if (span_id == 0) {
        PyObject *fresh = PyObject_CallNoArgs(new_id);
        if (fresh == NULL)
            return -1;
        rc = u64_of(fresh, &span_id);
        Py_DECREF(fresh);
        if (rc)
            return rc;
    }
    static const unsigned char t0[] = {0x0a, 0x10}, t1[] = {0x12, 0x08};
    if (put(b, t0, 2) || put(b, trace, 16) || put(b, t1, 2) || be64(b, span_id) ||
        put(b, under->p, under->n))
        return -1;
    if ((rc = head(b, PyTuple_GET_ITEM(c, 0), PyTuple_GET_ITEM(c, 1))))
        return rc;
    if (times(b, start, end))
        return -1;
    for (int i = 4; i <= 5; i++) { /* shared attributes, then its own */
        PyObject *attrs = PyTuple_GET_ITEM(c, i);
        int t = PyObject_IsTrue(attrs);
        if (t < 0)
            return -1;
        if (t && (rc = attributes(b, attrs)))
            return rc;
    }
    PyObject *lk = PyTuple_GET_ITEM(c, 6);
    if (lk != Py_None) {
        int t = PyObject_IsTrue(lk);
        if (t < 0)
            return -1;
        if (t && (rc = links(b, lk)))
            return rc;
    }
    return status(b, PyTuple_GET_ITEM(c, 7), 0);
}

/* The event's own span (Encoder.span). */
static int span(Buf *b, PyObject *s, const unsigned char *trace, unsigned long long span_id,
                PyObject *state) {
    unsigned long long parent_id, start, end;
    PyObject *name = NULL, *kind = NULL, *v = NULL;
    int rc;
    static const unsigned char t0[] = {0x0a, 0x10}, t1[] = {0x12, 0x08}, t2[] = {0x22, 0x08};
    if (put(b, t0, 2) || put(b, trace, 16) || put(b, t1, 2) || be64(b, span_id))
        return -1;
    if (state != NULL) {
        Py_ssize_t n;
        const char *ss = PyUnicode_AsUTF8AndSize(state, &n);
        if (ss == NULL || field(b, 0x1a, ss, n))
            return -1;
    }
    if ((rc = u64_attr(s, s_parent_id, &parent_id)))
        return rc;
    if (parent_id && (put(b, t2, 2) || be64(b, parent_id)))
        return -1;
    if ((name = PyObject_GetAttr(s, s_name)) == NULL)
        return -1;
    if ((kind = PyObject_GetAttr(s, s_kind)) == NULL) {
        Py_DECREF(name);
        return -1;
    }
    rc = head(b, name, kind);
    Py_DECREF(name);
    Py_DECREF(kind);
    if (rc)
        return rc;
    if ((rc = u64_attr(s, s_start, &start)) || (rc = u64_attr(s, s_end, &end)))
        return rc;
    if (times(b, start, end))
        return -1;
    PyObject *names[] = {s_shared, s_attributes};
    for (int i = 0; i < 2; i++) {
        if (truthy_attr(s, names[i], &v))
            return -1;
        rc = attributes(b, v);
        Py_XDECREF(v);
        if (rc)
            return rc;
    }
    if (truthy_attr(s, s_events, &v))
        return -1;
    if (v != NULL) { /* an exception event: the Python encoder */
        Py_DECREF(v);
        return UNSUPPORTED;
    }
    if (truthy_attr(s, s_links, &v))
        return -1;
    rc = links(b, v);
    Py_XDECREF(v);
    if (rc)
        return rc;
    PyObject *st = PyObject_GetAttr(s, s_status);
    if (st == NULL)
        return -1;
    PyObject *pr = PyObject_GetAttr(s, s_parent_remote);
    if (pr == NULL) {
        Py_DECREF(st);
        return -1;
    }
    int remote = PyObject_IsTrue(pr);
    Py_DECREF(pr);
    rc = remote < 0 ? -1 : status(b, st, remote);
    Py_DECREF(st);
    return rc;
}

static int encode(Buf *out, Buf *body, Buf *under, PyObject *s, PyObject *children,
                  PyObject *new_id) {
    unsigned char trace[16];
    unsigned long long span_id;
    PyObject *state = NULL;
    int rc;
    PyObject *tid = PyObject_GetAttr(s, s_trace_id);
    if (tid == NULL)
        return -1;
    rc = trace_bytes(tid, trace);
    Py_DECREF(tid);
    if (rc)
        return rc;
    if ((rc = u64_attr(s, s_span_id, &span_id)))
        return rc;
    if (truthy_attr(s, s_state, &state))
        return -1;
    if (state != NULL && !PyUnicode_CheckExact(state)) {
        Py_DECREF(state);
        return UNSUPPORTED;
    }
    if (!PyList_Check(children) && !PyTuple_Check(children)) {
        Py_XDECREF(state);
        return UNSUPPORTED;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(children);
    if (n) { /* what every child has after its own span id: tracestate, parent span id */
        if (state != NULL) {
            Py_ssize_t sn;
            const char *ss = PyUnicode_AsUTF8AndSize(state, &sn);
            if (ss == NULL || field(under, 0x1a, ss, sn)) {
                Py_DECREF(state);
                return -1;
            }
        }
        if (put1(under, 0x22) || put1(under, 0x08) || be64(under, span_id)) {
            Py_XDECREF(state);
            return -1;
        }
    }
    PyObject **items = PySequence_Fast_ITEMS(children);
    for (Py_ssize_t i = 0; i < n; i++) {
        body->n = 0;
        if ((rc = child(body, items[i], trace, under, new_id)) || (rc = entry(out, body))) {
            Py_XDECREF(state);
            return rc;
        }
    }
    body->n = 0;
    rc = span(body, s, trace, span_id, state);
    Py_XDECREF(state);
    return rc ? rc : entry(out, body);
}

PyDoc_STRVAR(event_doc,
             "event(span, children, new_id) -> bytes | None\n\n"
             "An event's child spans then its span, as Encoder.event writes them; None when "
             "something needs the Python encoder. new_id() gives a child without one its span "
             "id.");

static PyObject *event(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "event(span, children, new_id): 3 arguments");
        return NULL;
    }
    Buf out = {0}, body = {0}, under = {0};
    int rc = encode(&out, &body, &under, args[0], args[1], args[2]);
    PyObject *result = NULL;
    if (rc == 0)
        result = PyBytes_FromStringAndSize((const char *)out.p, out.n);
    else if (rc == UNSUPPORTED)
        result = Py_NewRef(Py_None);
    PyMem_Free(out.p);
    PyMem_Free(body.p);
    PyMem_Free(under.p);
    return result;
}

static PyMethodDef methods[] = {
    {"event", (PyCFunction)(void (*)(void))event, METH_FASTCALL, event_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlp", "The OTLP encoder's hot path (see otlp.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp(void) {
#define INTERN(var, text)                                                                      \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                      \
        return NULL;
    INTERN(s_trace_id, "trace_id")
    INTERN(s_span_id, "span_id")
    INTERN(s_parent_id, "parent_id")
    INTERN(s_parent_remote, "parent_remote")
    INTERN(s_state, "state")
    INTERN(s_name, "name")
    INTERN(s_kind, "kind")
    INTERN(s_start, "start")
    INTERN(s_end, "end")
    INTERN(s_shared, "shared")
    INTERN(s_attributes, "attributes")
    INTERN(s_events, "events")
    INTERN(s_links, "links")
    INTERN(s_status, "status")
    INTERN(s_remote, "remote")
#undef INTERN
    return PyModule_Create(&module);
}
