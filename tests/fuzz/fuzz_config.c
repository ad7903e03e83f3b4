/*
 * fuzz_config.c - the butlerfs configuration file (common/config.c).
 *
 * The input is the file.  A file that loads must give a configuration whose
 * rules map locations to replicas without trouble: each rule's prefix and
 * a few fixed locations are mapped and the results checked for shape.
 */
#include "config.h"
#include "fuzz_util.h"

#include <errno.h>
#include <string.h>

static void check_replicas(const bfs_config *c, const char *location)
{
    char **urls = NULL;
    int n = bfs_config_replicas(c, location, &urls);
    if (n == -ENOMEM)
        return;
    if (n < 1 || !urls)
        abort(); /* the contract: at least the location itself */
    for (int i = 0; i < n; i++)
        if (!urls[i])
            abort();
    bfs_config_free_urls(urls, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "%s/config.yaml", fz_setup());
    fz_write(path, data, size);

    bfs_config c;
    char *msg = NULL;
    int rc = bfs_config_load(path, &c, &msg);
    if (rc < 0) {
        if (!msg)
            abort(); /* every refusal says why */
        free(msg);
        bfs_config_free(&c); /* harmless on the defaults it holds */
        return 0;
    }
    if (msg)
        abort();
    static const char *const locations[] = {
        "s3://rubin-summit/LSSTCam/raw.fits", "https://host/data/x.fits", "/repo/a/b.fits",
        "file:///repo/a/b.fits", "relative/x.fits", "",
    };
    for (size_t i = 0; i < sizeof locations / sizeof *locations; i++)
        check_replicas(&c, locations[i]);
    for (int i = 0; i < c.n_rules; i++) {
        const bfs_source_rule *r = &c.rules[i];
        if (!r->prefix || r->n_replicas < 1 || r->prefix[strlen(r->prefix) - 1] != '/')
            abort(); /* normalized: every prefix ends in '/' */
        check_replicas(&c, r->prefix);
        char *below = malloc(strlen(r->prefix) + 8);
        if (below) {
            sprintf(below, "%sx/y.z", r->prefix);
            check_replicas(&c, below);
            free(below);
        }
    }
    bfs_config_free(&c);
    return 0;
}
