/*
 * http_i.h - internals of http.c exposed to its tests and fuzz harness.
 *
 * The reply-head parser is libcurl's header callback in http.c; it is fed
 * one line at a time by libcurl and records the status, Content-Length,
 * Content-Range, ETag and Last-Modified of a reply, then checks a final
 * 200/206 head against the request before any body byte is accepted.
 * bfs_http_replay() drives that same code (the callbacks, not a copy) over a
 * reply held in memory, as libcurl would deliver it, so the parser can be
 * tested and fuzzed without a server.
 */
#ifndef BFS_HTTP_I_H
#define BFS_HTTP_I_H

#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the callbacks made of one reply. */
typedef struct bfs_http_replay_result {
    long status;             /* of the last status line seen, 0 for none */
    int64_t content_length;  /* -1 when absent or malformed */
    int64_t expect;          /* body bytes the accepted head announced, -1 unknown */
    bool body_ok;            /* a final 200/206 head was accepted */
    size_t got;              /* body bytes copied into buf */
    int reject;              /* -errno recorded by a callback (the request would abort), 0 none */
} bfs_http_replay_result;

/* Feed reply (len bytes, not NUL-terminated: a head of CRLF or LF lines,
 * interim 1xx heads allowed, then the body) to the header and body
 * callbacks of a GET of bytes off..last (inclusive, 0 <= off <= last) with
 * the optional pin, in chunks of at most chunk bytes (>= 1) as libcurl
 * would.  buf receives the body and must hold last - off + 1 bytes.  Stops
 * where a callback would make libcurl abort.  Writes *out; returns its
 * reject (0 or -errno). */
int bfs_http_replay(const char *reply, size_t len, int64_t off, int64_t last,
                    const bfs_object *pin, size_t chunk, void *buf,
                    bfs_http_replay_result *out);

#endif
