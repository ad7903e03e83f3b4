/* sidecar.c - see sidecar.h; the format is docs/transfer.md, "Sidecars". */
#include "sidecar.h"

#include "strutil.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- checksums ---- */

struct bfs_sums {
    EVP_MD_CTX *md5;
    uLong adler;
    int64_t size;
};

bfs_sums *bfs_sums_new(void)
{
    bfs_sums *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->adler = adler32(0L, Z_NULL, 0);
    s->md5 = EVP_MD_CTX_new();
    if (!s->md5 || EVP_DigestInit_ex(s->md5, EVP_md5(), NULL) != 1) {
        bfs_sums_free(s);
        return NULL;
    }
    return s;
}

int bfs_sums_update(bfs_sums *s, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (EVP_DigestUpdate(s->md5, buf, len) != 1)
        return -ENOMEM;
    s->size += (int64_t)len;
    while (len) { /* adler32() takes a uInt length */
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        s->adler = adler32(s->adler, p, n);
        p += n, len -= n;
    }
    return 0;
}

int bfs_sums_final(bfs_sums *s, bfs_file_sums *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(s->md5, d, &n) != 1 || n != 16)
        return -EIO;
    out->size = s->size;
    snprintf(out->adler32, sizeof out->adler32, "%08lx", (unsigned long)(s->adler & 0xffffffffUL));
    for (unsigned int i = 0; i < n; i++)
        snprintf(out->md5 + 2 * i, 3, "%02x", d[i]);
    return 0;
}

void bfs_sums_free(bfs_sums *s)
{
    if (!s)
        return;
    EVP_MD_CTX_free(s->md5);
    free(s);
}

/* ---- shared checks ---- */

bool bfs_sidecar_path_ok(const char *rel)
{
    size_t len = rel ? strlen(rel) : 0;
    if (len == 0 || len > 4095 || rel[0] == '/' || strstr(rel, "://") || strchr(rel, '\\'))
        return false;
    for (const char *seg = rel; seg;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        seg = end ? end + 1 : NULL;
    }
    for (const unsigned char *p = (const unsigned char *)rel; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

static bool ident_ok(const char *s, bool dots, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                  (dots && c == '.');
        if (!ok)
            return false;
    }
    return true;
}

/* A collection name whose '/'-separated segments are each one safe path
 * component (so it can also be a relative directory). */
static bool run_ok(const char *run)
{
    size_t n = run ? strlen(run) : 0;
    if (n == 0 || n > 1024)
        return false;
    char *copy = strdup(run);
    bool ok = copy != NULL && run[0] != '/' && run[n - 1] != '/';
    for (char *save = NULL, *seg = copy ? strtok_r(copy, "/", &save) : NULL; ok && seg; seg = strtok_r(NULL, "/", &save))
        ok = bfs_is_one_component(seg);
    ok = ok && !strstr(run, "//");
    free(copy);
    return ok;
}

static bool hex_ok(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ---- writing ---- */

int bfs_sidecar_build(bfs_registry *reg, const bfs_dataset_record *r, const bfs_file_sums *sums,
                      char **json_out, char **errmsg)
{
    *json_out = NULL;
    if (r->component) {
        bfs_set_errmsg(errmsg, "dataset %s is stored in components (%s): sidecars describe whole files only",
                       r->id, r->component);
        return -EINVAL;
    }
    if (!bfs_sidecar_path_ok(r->path)) {
        bfs_set_errmsg(errmsg, "dataset %s: its datastore path '%s' is not a plain relative path", r->id, r->path);
        return -EINVAL;
    }
    char *coord = NULL;
    int ret = bfs_registry_data_coordinate_json(reg, r->dt, r->values, &coord);
    if (ret < 0) {
        bfs_set_errmsg(errmsg, "dataset %s: cannot read its dataId and dimension records: %s", r->id,
                       strerror(-ret));
        return ret;
    }
    json_error_t jerr;
    json_t *data_id = json_loads(coord, 0, &jerr);
    free(coord);
    char dashed[37];
    snprintf(dashed, sizeof dashed, "%.8s-%.4s-%.4s-%.4s-%.12s", r->id, r->id + 8, r->id + 12, r->id + 16,
             r->id + 20);
    json_t *dims = json_array();
    for (int i = 0; dims && i < r->dt->ndims; i++)
        json_array_append_new(dims, json_string(r->dt->dims[i]->name));
    json_t *dtype = json_pack("{s:s, s:s, s:o, s:n, s:b}", "name", r->dt->name, "storageClass",
                              r->dt->storage_class, "dimensions", dims, "parentStorageClass", "isCalibration",
                              r->dt->calibs_table != NULL);
    json_t *ref = json_pack("{s:s, s:s, s:n, s:o, s:o}", "id", dashed, "run", r->run, "component", "datasetType",
                            dtype, "dataId", data_id);
    json_t *root = json_pack("{s:o, s:I, s:s, s:s}", "ref", ref, "size", (json_int_t)sums->size, "adler32",
                             sums->adler32, "md5", sums->md5);
    if (root && r->checksum && json_object_set_new(root, "checksum", json_string(r->checksum)) < 0)
        json_decref(root), root = NULL;
    if (root && (json_object_set_new(root, "formatter", json_string(r->formatter)) < 0 ||
                 json_object_set_new(root, "path", json_string(r->path)) < 0))
        json_decref(root), root = NULL;
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text) {
        bfs_set_errmsg(errmsg, "dataset %s: cannot build its sidecar (out of memory or text that is not UTF-8)",
                       r->id);
        return -ENOMEM;
    }
    *json_out = bfs_asprintf("%s\n", text);
    free(text);
    return *json_out ? 0 : -ENOMEM;
}

/* ---- reading ---- */

struct parse {
    char **errmsg;
    int ret;
};

__attribute__((format(printf, 2, 3))) static bool fail(struct parse *p, const char *fmt, ...)
{
    if (p->ret == 0) {
        va_list ap;
        va_start(ap, fmt);
        bfs_set_errmsgv(p->errmsg, fmt, ap);
        va_end(ap);
        p->ret = -EINVAL;
    }
    return false;
}

/* The string at key of o (required), or NULL after fail(). */
static const char *get_string(struct parse *p, json_t *o, const char *key, const char *where)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) {
        fail(p, "sidecar: %s%s needs a string", where, key);
        return NULL;
    }
    return json_string_value(v);
}

static char *dup_checked(struct parse *p, const char *s)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d && p->ret == 0)
        p->ret = -ENOMEM;
    return d;
}

/* "8-4-4-4-12" lowercase hex into 32 hex digits. */
static bool uuid_ok(const char *s, char out[33])
{
    static const int groups[] = {8, 4, 4, 4, 12};
    if (!s || strlen(s) != 36)
        return false;
    int k = 0;
    const char *q = s;
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < groups[g]; i++, q++) {
            if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f')))
                return false;
            out[k++] = *q;
        }
        if (g < 4 && *q++ != '-')
            return false;
    }
    out[k] = '\0';
    return true;
}

static void parse_dataset_type(struct parse *p, json_t *dt, bfs_sidecar *out)
{
    if (!json_is_object(dt)) {
        fail(p, "sidecar: ref.datasetType needs an object");
        return;
    }
    const char *name = get_string(p, dt, "name", "ref.datasetType.");
    const char *sc = get_string(p, dt, "storageClass", "ref.datasetType.");
    if (p->ret)
        return;
    if (!ident_ok(name, true, 256))
        fail(p, "sidecar: ref.datasetType.name '%.64s' is not a dataset type name", name);
    else if (!ident_ok(sc, true, 256))
        fail(p, "sidecar: ref.datasetType.storageClass '%.64s' is not a storage class name", sc);
    json_t *pc = json_object_get(dt, "parentStorageClass");
    if (pc && !json_is_null(pc))
        fail(p, "sidecar: ref.datasetType.parentStorageClass must be null (components are not sent alone)");
    json_t *cal = json_object_get(dt, "isCalibration");
    if (cal && !json_is_boolean(cal))
        fail(p, "sidecar: ref.datasetType.isCalibration needs true or false");
    json_t *dims = json_object_get(dt, "dimensions");
    if (!json_is_array(dims) || json_array_size(dims) > BFS_MAX_DIMS)
        fail(p, "sidecar: ref.datasetType.dimensions needs a list of at most %d names", BFS_MAX_DIMS);
    if (p->ret)
        return;
    out->dataset_type = dup_checked(p, name);
    out->storage_class = dup_checked(p, sc);
    out->is_calibration = json_is_true(cal);
    size_t i;
    json_t *d;
    json_array_foreach(dims, i, d) {
        const char *s = json_string_value(d);
        if (!ident_ok(s, false, 64))
            return (void)fail(p, "sidecar: ref.datasetType.dimensions[%zu] is not a dimension name", i);
        for (int j = 0; j < out->ndims; j++)
            if (!strcmp(out->dims[j], s))
                return (void)fail(p, "sidecar: dimension %s is listed twice", s);
        if (!(out->dims[out->ndims] = dup_checked(p, s)))
            return;
        out->ndims++;
    }
}

/* A string of r (owned by r), or NULL when out of memory. */
static const char *record_str(struct parse *p, bfs_sidecar_record *r, const char *s)
{
    char *d = dup_checked(p, s);
    if (d)
        r->strs[r->nstrs++] = d;
    return d;
}

static void record_value(struct parse *p, bfs_sidecar_record *r, const char *column, int type, int64_t i,
                         double f, const char *s)
{
    if (r->n == BFS_SIDECAR_MAX_COLUMNS) {
        fail(p, "sidecar: record %s has more than %d columns", r->element, BFS_SIDECAR_MAX_COLUMNS);
        return;
    }
    bfs_record_value *v = &r->v[r->n++];
    v->column = record_str(p, r, column);
    v->type = type;
    v->i = i;
    v->f = f;
    v->s = s ? record_str(p, r, s) : NULL;
}

/* One record object of element k into r: scalar columns as they are, the
 * timespan pair as its two columns, the region left out. */
static void parse_record(struct parse *p, const char *k, json_t *rec, bfs_sidecar_record *r)
{
    r->element = dup_checked(p, k);
    const char *col;
    json_t *v;
    json_object_foreach(rec, col, v) {
        if (p->ret)
            return;
        if (!ident_ok(col, false, 64)) {
            fail(p, "sidecar: record %.64s has a column '%.64s' that is no column name", k, col);
        } else if (!strcmp(col, "region")) {
            continue; /* encoded differently per registry; a visit's region is recomputed there */
        } else if (!strcmp(col, "timespan")) {
            json_t *b = json_array_get(v, 0), *e = json_array_get(v, 1);
            if (json_is_null(v)) {
                record_value(p, r, "timespan_begin", BFS_VAL_NULL, 0, 0, NULL);
                record_value(p, r, "timespan_end", BFS_VAL_NULL, 0, 0, NULL);
            } else if (json_array_size(v) == 2 && json_is_integer(b) && json_is_integer(e)) {
                record_value(p, r, "timespan_begin", BFS_VAL_INT, json_integer_value(b), 0, NULL);
                record_value(p, r, "timespan_end", BFS_VAL_INT, json_integer_value(e), 0, NULL);
            } else {
                fail(p, "sidecar: record %.64s: timespan needs [begin, end] in nanoseconds, or null", k);
            }
        } else if (json_is_integer(v)) {
            record_value(p, r, col, BFS_VAL_INT, json_integer_value(v), 0, NULL);
        } else if (json_is_boolean(v)) {
            record_value(p, r, col, BFS_VAL_INT, json_is_true(v), 0, NULL);
        } else if (json_is_real(v)) {
            record_value(p, r, col, BFS_VAL_REAL, 0, json_real_value(v), NULL);
        } else if (json_is_null(v)) {
            record_value(p, r, col, BFS_VAL_NULL, 0, 0, NULL);
        } else if (json_is_string(v) && json_string_length(v) < 4096 &&
                   strlen(json_string_value(v)) == json_string_length(v)) {
            record_value(p, r, col, BFS_VAL_TEXT, 0, 0, json_string_value(v));
        } else {
            fail(p, "sidecar: record %.64s: column %.64s needs a number, a string, true/false or null", k, col);
        }
    }
}

static void parse_data_id(struct parse *p, json_t *coord, bfs_sidecar *out)
{
    json_t *ids = json_object_get(coord, "dataId");
    if (!json_is_object(coord) || !json_is_object(ids))
        return (void)fail(p, "sidecar: ref.dataId needs an object with a dataId object");
    if (json_object_size(ids) > BFS_SIDECAR_MAX_DATAID)
        return (void)fail(p, "sidecar: the dataId has more than %d dimensions", BFS_SIDECAR_MAX_DATAID);
    const char *k;
    json_t *v;
    json_object_foreach(ids, k, v) {
        if (!ident_ok(k, false, 64))
            return (void)fail(p, "sidecar: dataId key '%.64s' is not a dimension name", k);
        char text[BFS_MAX_VALUE];
        if (json_is_integer(v)) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
        } else if (json_is_string(v) && json_string_length(v) < sizeof text &&
                   strlen(json_string_value(v)) == json_string_length(v) &&
                   bfs_is_one_component(json_string_value(v))) {
            snprintf(text, sizeof text, "%s", json_string_value(v));
        } else {
            return (void)fail(p, "sidecar: dataId value of %s needs an integer or a string usable as one "
                                 "path component (no '/', not empty, no control character)", k);
        }
        int n = out->n_data_id;
        out->data_id_names[n] = dup_checked(p, k);
        out->data_id_values[n] = dup_checked(p, text);
        out->n_data_id++;
        if (p->ret)
            return;
    }
    for (int i = 0; i < out->ndims; i++)
        if (!json_object_get(ids, out->dims[i]))
            return (void)fail(p, "sidecar: the dataId lacks required dimension %s", out->dims[i]);
    json_t *recs = json_object_get(coord, "records");
    if (recs && !json_is_null(recs) && !json_is_object(recs))
        return (void)fail(p, "sidecar: ref.dataId.records needs an object or null");
    json_object_foreach(recs, k, v) {
        json_t *def = json_object_get(v, "definition");
        if (!json_is_object(v) || !json_is_string(def) || strcmp(json_string_value(def), k) ||
            !json_is_object(json_object_get(v, "record")))
            return (void)fail(p, "sidecar: dimension record '%.64s' needs {\"definition\": \"%.64s\", \"record\": {...}}",
                              k, k);
        if (out->n_records == BFS_SIDECAR_MAX_DATAID)
            return (void)fail(p, "sidecar: more than %d dimension records", BFS_SIDECAR_MAX_DATAID);
        if (!ident_ok(k, false, 64))
            return (void)fail(p, "sidecar: dimension record '%.64s' is not an element name", k);
        parse_record(p, k, json_object_get(v, "record"), &out->records[out->n_records++]);
        if (p->ret)
            return;
    }
}

int bfs_sidecar_parse(const char *json, size_t len, bfs_sidecar *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    if (len > BFS_SIDECAR_MAX_BYTES) {
        bfs_set_errmsg(errmsg, "sidecar: %zu bytes, more than the %d a sidecar may have", len, BFS_SIDECAR_MAX_BYTES);
        return -E2BIG;
    }
    struct parse p = {errmsg, 0};
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        bfs_set_errmsg(errmsg, "sidecar: not JSON: line %d: %s", jerr.line, jerr.text);
        return -EINVAL;
    }
    json_t *ref = json_object_get(root, "ref");
    if (!json_is_object(root) || !json_is_object(ref)) {
        fail(&p, "sidecar: needs an object with a ref object");
        goto out;
    }
    const char *id = get_string(&p, ref, "id", "ref.");
    const char *run = get_string(&p, ref, "run", "ref.");
    if (p.ret)
        goto out;
    if (!uuid_ok(id, out->id))
        fail(&p, "sidecar: ref.id '%.40s' is no UUID in lowercase 8-4-4-4-12 form", id);
    else if (!run_ok(run))
        fail(&p, "sidecar: ref.run '%.64s' is not a usable RUN name", run);
    json_t *comp = json_object_get(ref, "component");
    if (comp && !json_is_null(comp))
        fail(&p, "sidecar: ref.component must be null");
    if (p.ret)
        goto out;
    out->run = dup_checked(&p, run);
    parse_dataset_type(&p, json_object_get(ref, "datasetType"), out);
    if (!p.ret)
        parse_data_id(&p, json_object_get(ref, "dataId"), out);
    if (p.ret)
        goto out;
    json_t *size = json_object_get(root, "size");
    const char *a32 = get_string(&p, root, "adler32", "");
    const char *md5 = get_string(&p, root, "md5", "");
    const char *fmt = get_string(&p, root, "formatter", "");
    const char *path = get_string(&p, root, "path", "");
    json_t *ck = json_object_get(root, "checksum");
    if (p.ret)
        goto out;
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        fail(&p, "sidecar: size needs a whole number of bytes, 0 or more");
    else if (!hex_ok(a32, 8))
        fail(&p, "sidecar: adler32 needs 8 lowercase hex digits");
    else if (!hex_ok(md5, 32))
        fail(&p, "sidecar: md5 needs 32 lowercase hex digits");
    else if (ck && !json_is_null(ck) && !hex_ok(json_string_value(ck), 128))
        fail(&p, "sidecar: checksum needs 128 lowercase hex digits (BLAKE2b-512) or null");
    else if (!ident_ok(fmt, true, 512))
        fail(&p, "sidecar: formatter '%.64s' is not a Python class name", fmt);
    else if (!bfs_sidecar_path_ok(path))
        fail(&p, "sidecar: path '%.64s' is not a plain relative path", path);
    if (p.ret)
        goto out;
    out->size = json_integer_value(size);
    memcpy(out->adler32, a32, 9);
    memcpy(out->md5, md5, 33);
    if (ck && json_is_string(ck))
        memcpy(out->checksum, json_string_value(ck), 129);
    out->formatter = dup_checked(&p, fmt);
    out->path = dup_checked(&p, path);
out:
    json_decref(root);
    return p.ret;
}

void bfs_sidecar_free(bfs_sidecar *s)
{
    if (!s)
        return;
    free(s->run);
    free(s->dataset_type);
    free(s->storage_class);
    for (int i = 0; i < s->ndims; i++)
        free(s->dims[i]);
    for (int i = 0; i < s->n_data_id; i++)
        free(s->data_id_names[i]), free(s->data_id_values[i]);
    free(s->formatter);
    free(s->path);
    for (int i = 0; i < s->n_records; i++) {
        free(s->records[i].element);
        for (int k = 0; k < s->records[i].nstrs; k++)
            free(s->records[i].strs[k]);
    }
    memset(s, 0, sizeof *s);
}
