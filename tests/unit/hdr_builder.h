/*
 * hdr_builder.h - headers built card by card for the translation tests
 * (test_translate.c, test_translate_decam.c): put() sets or appends a card,
 * drop() removes one keeping the order, S() and N() put a string or a
 * number (floating when it has a dot); shared_dir() and classify() for the
 * fixture header dumps.  Include after <cmocka.h>.
 */
#ifndef BFS_TEST_HDR_BUILDER_H
#define BFS_TEST_HDR_BUILDER_H

#include "fits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hdr {
    bfs_fits_card c[400];
    size_t n;
};

static inline void put(struct hdr *h, const char *key, char type, const char *value)
{
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->c[i].key, key)) {
            h->c[i].type = type;
            snprintf(h->c[i].value, sizeof h->c[i].value, "%s", value);
            return;
        }
    assert_true(h->n < sizeof h->c / sizeof *h->c);
    bfs_fits_card *c = &h->c[h->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->value, sizeof c->value, "%s", value);
    c->type = type;
}

static inline void drop(struct hdr *h, const char *key)
{
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->c[i].key, key)) {
            memmove(&h->c[i], &h->c[i + 1], (h->n - i - 1) * sizeof *h->c);
            h->n--;
            return;
        }
}

/* ../shared, or $BFS_SHARED: where the fixtures are */
static inline const char *shared_dir(void)
{
    const char *s = getenv("BFS_SHARED");
    return s ? s : "../shared";
}

/* The FITS card type a dumped value has by its look: 'L', 'I', 'F' or 'C'. */
static inline char classify(const char *v)
{
    if (!strcmp(v, "true") || !strcmp(v, "false"))
        return 'L';
    char *end;
    if (*v) {
        strtoll(v, &end, 10);
        if (!*end)
            return 'I';
        strtod(v, &end);
        if (!*end)
            return 'F';
    }
    return 'C';
}

#define S(h, k, v) put(h, k, 'C', v)
#define N(h, k, v) put(h, k, strchr(v, '.') ? 'F' : 'I', v)

#endif
