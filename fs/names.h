/*
 * names.h - the path grammar of a mount (docs/paths.md), as pure functions.
 *
 *   MNT/<collection>/<datasetType>/<dim>=<value>/.../<file>
 *
 * Every name built here is one path component made safe with
 * bfs_name_escape() (common/strutil.h): no value from the registry can
 * introduce a '/', a "..", or a control character.
 */
#ifndef BFS_NAMES_H
#define BFS_NAMES_H

#include "registry.h"

#include <stdbool.h>
#include <stddef.h>

#define BFS_NAME_MAX 256        /* a path component, NUL included (NAME_MAX + 1) */
#define BFS_TYPE_SUFFIX "@type" /* marks a dataset type that shares its name with a child collection */

/* The extension a leaf keeps from its datastore file: the last suffix of
 * the basename, and the one before it when the last is a compression
 * suffix (".fits.fz", ".fits.gz", ".tar.gz").  "" when there is none. */
void bfs_names_extension(const char *location, char *out, size_t outsz);

/* "<dim>=<escaped value>" into out; -ENAMETOOLONG if it does not fit. */
int bfs_names_dim_entry(const char *dim, const char *value, char *out, size_t outsz);

/* Decode one path component: bfs_name_unescape, but -EINVAL also for an
 * escape bfs_name_escape would not write ("%30" for "0", "%41" for "A";
 * hex digits may be lower case), so each value has one name. */
int bfs_names_unescape(const char *name, char *out, size_t outsz);

/* Split "<dim>=<escaped value>": dim into dim_out, value decoded by
 * bfs_names_unescape into value_out.  -EINVAL when name has no '=' or the
 * value no canonical escape. */
int bfs_names_parse_dim(const char *name, char *dim_out, size_t dimsz, char *value_out, size_t valsz);

/* False for a decimal integer in any form but the one the registry's value
 * is listed in ("00", "+0", "-0", "007"); true for the canonical form and
 * for text that is no integer (an alternate key such as R22_S11).  A
 * lookup of a non-canonical integer is no alias of the canonical one. */
bool bfs_names_int_canonical(const char *value);

/* The leaf name of one file record:
 *   <datasetType>[.<component>]_<v1>_..._<vn>[_valid-<begin>-<end>]<ext>
 * values in required-dimension order, validity only for calibration
 * matches (times UTC, "unbounded" for open ends).  Escaped as a whole. */
int bfs_names_file(const bfs_dataset_type *dt, const bfs_dataset_file *f, char *out, size_t outsz);

/* Append "_<first 8 hex of id>" before the extension of name (for two
 * entries of one directory that would otherwise share a name). */
int bfs_names_disambiguate(char *name, size_t namesz, const char *id, const char *location);

#endif
