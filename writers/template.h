/*
 * template.h - datastore paths from daf_butler file templates, so a file
 * ingested through the mount lands where the Python Butler would put it.
 *
 * A template is daf_butler's FileTemplate string, e.g. the default
 *   {run:/}/{datasetType}.{component:?}/.../{datasetType}_..._{run}
 * Fields are dataId values ("detector"), record attributes
 * ("exposure.obs_id", "detector.full_name"), "datasetType" and "run";
 * "a|b.c" picks the first alternative whose dimension is known; ":?" makes a
 * field optional (a missing one drops itself and the literal before it,
 * unless that literal holds a '/'); ":/" keeps '/' in a value (else it
 * becomes '_').  In values, the characters  <>:"\|?* become '_'.  In the
 * last path component, '.' becomes '_' and '#' becomes "HASH".  The path is
 * normalised (no empty or "." components) and relative.  The rules are
 * daf_butler's FileTemplate.format (datastore/file_templates.py).
 *
 * Which template: the repository's butler.yaml `datastore: templates:`
 * entry for the dataset type's name, else for its storage class, else its
 * `default`, else daf_butler's own default (fileDatastore.yaml).
 *
 * Ownership: strings returned through char ** are malloc'd; the caller
 * frees them.  Errors: negative errno, with *errmsg a sentence.
 * Threads: no shared state.
 */
#ifndef BFS_TEMPLATE_H
#define BFS_TEMPLATE_H

#include <stddef.h>

/* daf_butler's default file template (configs/datastores/fileDatastore.yaml). */
extern const char bfs_template_default[];

typedef struct bfs_template_value {
    const char *name;  /* "instrument", "exposure.obs_id", ... */
    const char *value; /* text; integers as decimal */
} bfs_template_value;

/* The template for a dataset type (storage_class may be NULL) in the
 * repository at repo_dir: *out is malloc'd.  A butler.yaml that cannot be
 * read, or has no templates, gives the default. */
int bfs_template_for(const char *repo_dir, const char *dataset_type, const char *storage_class,
                     char **out, char **errmsg);

/* Format tmpl for a dataset of type dataset_type in run, with values[0..n-1]
 * (dataId values and record attributes), into *out (malloc'd, no
 * extension).  -EINVAL when a required field has no value, or the template
 * is malformed; -ENAMETOOLONG beyond PATH_MAX. */
int bfs_template_format(const char *tmpl, const char *dataset_type, const char *run,
                        const bfs_template_value *values, size_t n, char **out, char **errmsg);

#endif
