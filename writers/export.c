/* export.c - see export.h. */
#include "export.h"

#include "durable.h"
#include "sidecar.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_BUF (1 << 20)
#define EXPORT_MAX_SIDECAR BFS_SIDECAR_MAX_BYTES

/* Write all of buf to fd. */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        buf += w, n -= (size_t)w;
    }
    return 0;
}

/* Read exactly n bytes at off of fd (fewer only at its end): the count, or -errno. */
static ssize_t pread_full(int fd, char *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, buf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* The whole file at path (at most max bytes) into *out, NUL-terminated. */
static int read_small(const char *path, size_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    char *buf = malloc(max + 1);
    ssize_t n = buf ? pread_full(fd, buf, max + 1, 0) : -ENOMEM;
    close(fd);
    if (n < 0 || (size_t)n > max) {
        free(buf);
        return n < 0 ? (int)n : -EFBIG;
    }
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    return 0;
}

/* Stream r's bytes from src: into sums, the registry checksum's state (may
 * be NULL), and either to out_fd (a copy) or compared with cmp_fd.
 * *same: false once a byte or the length differs from cmp_fd. */
static int stream(bfs_source *src, bfs_sums *sums, bfs_checksum *ck, int out_fd, int cmp_fd, bool *same)
{
    char *buf = malloc(EXPORT_BUF), *other = cmp_fd >= 0 ? malloc(EXPORT_BUF) : NULL;
    int ret = buf && (cmp_fd < 0 || other) ? 0 : -ENOMEM;
    int64_t size = bfs_source_size(src), off = 0;
    while (ret == 0 && off < size) {
        ssize_t k = bfs_source_pread(src, buf, EXPORT_BUF, off);
        if (k <= 0) {
            ret = k < 0 ? (int)k : -EIO; /* shorter than it was at open */
            break;
        }
        if ((ret = bfs_sums_update(sums, buf, (size_t)k)) < 0 || (ck && (ret = bfs_checksum_update(ck, buf, (size_t)k)) < 0))
            break;
        if (out_fd >= 0) {
            ret = write_all(out_fd, buf, (size_t)k);
        } else if (*same) {
            ssize_t m = pread_full(cmp_fd, other, (size_t)k, off);
            if (m < 0)
                ret = (int)m;
            else if (m != k || memcmp(buf, other, (size_t)k))
                *same = false;
        }
        off += k;
    }
    if (ret == 0 && cmp_fd >= 0 && *same) { /* the existing file must end here too */
        char c;
        ssize_t m = pread(cmp_fd, &c, 1, size);
        if (m < 0)
            ret = -errno;
        else if (m > 0)
            *same = false;
    }
    free(buf);
    free(other);
    return ret;
}

/* Put tmp at path, never replacing a file there; then fsync the directory. */
static int place(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* a file system without RENAME_NOREPLACE: link fails on an existing name too */
        if (link(tmp, path) < 0)
            return -errno;
        unlink(tmp);
    }
    char *d = bfs_dir_of(path);
    int ret = d ? bfs_fsync_dir(d) : -ENOMEM;
    free(d);
    return ret;
}

struct job {
    bfs_registry *reg;
    const bfs_dataset_record *r;
    char *dest, *side, *tmp;
    char **errmsg;
};

/* Whether registry checksum text is the BLAKE2b-512 hex bfs_checksum makes. */
static bool blake2b_hex(const char *s)
{
    if (!s || strlen(s) != 128)
        return false;
    for (const char *p = s; *p; p++)
        if (bfs_hexval(*p) < 0)
            return false;
    return true;
}

/* The checks of the bytes read against what the registry says. */
static int check_bytes(struct job *j, const bfs_file_sums *fs, bfs_checksum *ck)
{
    const bfs_dataset_record *r = j->r;
    if (r->file_size >= 0 && fs->size != r->file_size) {
        bfs_set_errmsg(j->errmsg, "%s: the registry records %lld bytes, the datastore file has %lld", r->path,
                       (long long)r->file_size, (long long)fs->size);
        return -EIO;
    }
    if (ck) {
        char hex[129];
        int ret = bfs_checksum_hex(ck, hex);
        if (ret < 0)
            return ret;
        if (strcasecmp(hex, r->checksum)) {
            bfs_set_errmsg(j->errmsg, "%s: the bytes do not match the registry's BLAKE2b-512 checksum", r->path);
            return -EIO;
        }
    }
    return 0;
}

/* The sidecar at j->side: 1 written, 0 the same one is there, -EEXIST another one is. */
static int put_sidecar(struct job *j, const char *text, bool dry_run)
{
    char *have = NULL;
    size_t len = 0;
    int ret = read_small(j->side, EXPORT_MAX_SIDECAR, &have, &len);
    if (ret == 0) {
        bool same = len == strlen(text) && !memcmp(have, text, len);
        free(have);
        if (same)
            return 0;
        bfs_set_errmsg(j->errmsg, "%s exists with other content; not overwritten (move it away to export again)",
                       j->side);
        return -EEXIST;
    }
    if (ret != -ENOENT) {
        bfs_set_errmsg(j->errmsg, "%s: %s", j->side, strerror(-ret));
        return ret;
    }
    if (dry_run)
        return 1;
    ret = bfs_durable_write_mode(j->side, text, strlen(text), 0644);
    if (ret < 0)
        bfs_set_errmsg(j->errmsg, "cannot write %s: %s", j->side, strerror(-ret));
    return ret < 0 ? ret : 1;
}

static int export_one(struct job *j, bfs_fetcher *f, bool dry_run, int64_t *bytes)
{
    const bfs_dataset_record *r = j->r;
    struct stat st;
    bool exists = lstat(j->dest, &st) == 0;
    if (!exists && errno != ENOENT) {
        bfs_set_errmsg(j->errmsg, "%s: %s", j->dest, strerror(errno));
        return -errno;
    }
    if (exists && !S_ISREG(st.st_mode)) {
        bfs_set_errmsg(j->errmsg, "%s exists and is not a regular file; not overwritten", j->dest);
        return -EEXIST;
    }
    if (!exists && access(j->side, F_OK) == 0) {
        bfs_set_errmsg(j->errmsg, "%s exists without its file %s; not overwritten (move it away)", j->side, j->dest);
        return -EEXIST;
    }
    if (!exists && dry_run) {
        *bytes = r->file_size > 0 ? r->file_size : 0;
        return BFS_EXPORT_WRITTEN;
    }
    bfs_source *src = NULL;
    int ret = bfs_source_open(f, bfs_registry_datastore_root(j->reg), r->path, r->file_size, r->checksum, &src);
    if (ret < 0) {
        bfs_set_errmsg(j->errmsg, "cannot read %s%s: %s", bfs_registry_datastore_root(j->reg), r->path,
                       strerror(-ret));
        return ret;
    }
    bfs_sums *sums = bfs_sums_new();
    bfs_checksum *ck = blake2b_hex(r->checksum) ? bfs_checksum_new() : NULL;
    bool same = true;
    int fd = -1;
    ret = sums && (ck || !blake2b_hex(r->checksum)) ? 0 : -ENOMEM;
    if (ret == 0 && exists) {
        fd = open(j->dest, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        ret = fd < 0 ? -errno : stream(src, sums, ck, -1, fd, &same);
    } else if (ret == 0) {
        ret = bfs_make_parents(j->dest, false);
        fd = ret == 0 ? open(j->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644) : -1;
        if (ret == 0 && fd < 0)
            ret = -errno;
        if (ret == 0)
            ret = stream(src, sums, ck, fd, -1, &same);
        if (ret == 0 && fdatasync(fd) < 0)
            ret = -errno;
    }
    if (ret < 0 && j->errmsg && !*j->errmsg)
        bfs_set_errmsg(j->errmsg, "%s: %s", exists ? j->dest : j->tmp, strerror(-ret));
    if (fd >= 0)
        close(fd);
    bfs_source_close(src);
    bfs_file_sums fs = {0};
    if (ret == 0)
        ret = bfs_sums_final(sums, &fs);
    if (ret == 0)
        ret = check_bytes(j, &fs, ck);
    bfs_checksum_free(ck);
    bfs_sums_free(sums);
    if (ret == 0 && exists && !same) {
        bfs_set_errmsg(j->errmsg, "%s exists with other content; not overwritten (move it away to export again)",
                       j->dest);
        ret = -EEXIST;
    }
    char *text = NULL;
    if (ret == 0)
        ret = bfs_sidecar_build(j->reg, r, &fs, &text, j->errmsg);
    if (ret == 0 && !exists) {
        ret = place(j->tmp, j->dest);
        if (ret == -EEXIST)
            bfs_set_errmsg(j->errmsg, "%s appeared while exporting; not overwritten", j->dest);
        else if (ret < 0)
            bfs_set_errmsg(j->errmsg, "cannot rename into %s: %s", j->dest, strerror(-ret));
    }
    if (ret < 0 && !exists)
        unlink(j->tmp);
    if (ret == 0)
        ret = put_sidecar(j, text, dry_run);
    free(text);
    if (ret < 0)
        return ret;
    /* an existing identical file with a sidecar written now counts as exported */
    *bytes = exists ? 0 : fs.size;
    return exists && ret == 0 ? BFS_EXPORT_SKIPPED : BFS_EXPORT_WRITTEN;
}

int bfs_export_record(bfs_registry *reg, bfs_fetcher *f, const char *dir, const bfs_dataset_record *r,
                      bool dry_run, int64_t *bytes, char **errmsg)
{
    *bytes = 0;
    if (r->component) {
        bfs_set_errmsg(errmsg, "dataset %s is stored in components (%s); export takes whole files only", r->id,
                       r->component);
        return -EINVAL;
    }
    if (!bfs_sidecar_path_ok(r->path)) {
        bfs_set_errmsg(errmsg, "dataset %s: its location '%s' is not a plain path below the datastore root; "
                               "not exported", r->id, r->path);
        return -EINVAL;
    }
    size_t dl = strlen(dir);
    struct job j = {.reg = reg, .r = r, .errmsg = errmsg};
    j.dest = bfs_asprintf("%.*s/%s", (int)(dl && dir[dl - 1] == '/' ? dl - 1 : dl), dir, r->path);
    j.side = j.dest ? bfs_asprintf("%s" BFS_SIDECAR_SUFFIX, j.dest) : NULL;
    j.tmp = j.dest ? bfs_asprintf("%s.tmp", j.dest) : NULL;
    int ret = j.dest && j.side && j.tmp ? export_one(&j, f, dry_run, bytes) : -ENOMEM;
    if (ret == -ENOMEM && errmsg && !*errmsg)
        bfs_set_errmsg(errmsg, "out of memory");
    free(j.dest);
    free(j.side);
    free(j.tmp);
    return ret;
}
