/*
 * test_fits.c - writers/fits.c: files written through the writer handle
 * validate; damaged files (a flipped data byte, a flipped header byte, a
 * truncation, not FITS at all, a gzip-wrapped copy, a tile-compressed copy
 * made by fpack) give the documented errno and a sentence naming the HDU.
 * The real LSST raws in ../shared/fixtures/fits are validated when present.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>

#include "fits.h"

/* ".Z" in the directory: cfitsio once chose its LZW decoder for a gzip
 * stream by that name (a CI run failed on a mkdtemp suffix "ZcRoi1") */
static char dir[] = "/tmp/bfs_fits.Z_XXXXXX";

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A primary header and two 64 x 32 image extensions with checksums;
 * sums: whether to stamp CHECKSUM/DATASUM; nextend >= 0: a NEXTEND card. */
static void write_sample_ext(const char *path, bool sums, long nextend)
{
    bfs_fits *f = NULL;
    assert_int_equal(bfs_fits_create(path, &f), 0);
    bfs_fits_add_image(f, 16, 0, NULL);
    if (nextend >= 0)
        bfs_fits_key_lng(f, "NEXTEND", nextend, "number of extensions");
    bfs_fits_key_str(f, "OBSID", "MC_O_20250415_000060", "image name");
    bfs_fits_key_str(f, "QUOTED", "it's", NULL);
    bfs_fits_key_lng(f, "SEQNUM", 60, NULL);
    bfs_fits_key_dbl(f, "EXPTIME", 30.0, 3, "seconds");
    bfs_fits_key_dbl(f, "SKIPPED", NAN, 3, "not written");
    bfs_fits_key_log(f, "SIMULATE", true, NULL);
    if (sums)
        bfs_fits_checksum(f);
    int32_t pix[64 * 32];
    for (int k = 0; k < 2; k++) {
        long naxes[2] = {64, 32};
        bfs_fits_add_image(f, 32, 2, naxes);
        bfs_fits_key_str(f, "EXTNAME", k ? "Segment11" : "Segment10", NULL);
        for (int i = 0; i < 64 * 32; i++)
            pix[i] = (i * 7919 + k) % 65536;
        bfs_fits_write_i32(f, pix, 64 * 32);
        if (sums)
            bfs_fits_checksum(f);
    }
    assert_int_equal(bfs_fits_error(f), 0);
    assert_int_equal(bfs_fits_close(f), 0);
}

static void write_sample(const char *path, bool sums) { write_sample_ext(path, sums, -1); }

static off_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void test_roundtrip(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/ok.fits", dir);
    write_sample(path, true);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    assert_int_equal(sb.st_size % 2880, 0);

    bfs_fits_summary sum;
    char *msg = NULL;
    assert_int_equal(bfs_fits_validate(path, NULL, &sum, &msg), 0);
    assert_null(msg);
    assert_int_equal(sum.n_hdus, 3);
    assert_int_equal(sum.n_checksums, 3);
    assert_int_equal(sum.n_compressed, 0);
    assert_false(sum.gzip);

    bfs_fits_card *cards = NULL;
    size_t n = 0;
    assert_int_equal(bfs_fits_read_header(path, 1, &cards, &n, &msg), 0);
    const bfs_fits_card *c = bfs_fits_find(cards, n, "OBSID");
    assert_non_null(c);
    assert_int_equal(c->type, 'C');
    assert_string_equal(c->value, "MC_O_20250415_000060");
    assert_string_equal(c->comment, "image name");
    c = bfs_fits_find(cards, n, "QUOTED");
    assert_non_null(c);
    assert_string_equal(c->value, "it's");
    c = bfs_fits_find(cards, n, "SEQNUM");
    assert_non_null(c);
    assert_int_equal(c->type, 'I');
    assert_string_equal(c->value, "60");
    c = bfs_fits_find(cards, n, "EXPTIME");
    assert_non_null(c);
    assert_int_equal(c->type, 'F');
    assert_true(strtod(c->value, NULL) == 30.0);
    c = bfs_fits_find(cards, n, "SIMULATE");
    assert_non_null(c);
    assert_int_equal(c->type, 'L');
    assert_string_equal(c->value, "T");
    assert_null(bfs_fits_find(cards, n, "SKIPPED"));
    free(cards);

    assert_int_equal(bfs_fits_read_header(path, 3, &cards, &n, &msg), 0);
    c = bfs_fits_find(cards, n, "EXTNAME");
    assert_non_null(c);
    assert_string_equal(c->value, "Segment11");
    free(cards);

    /* the same content gives the same bytes (no time stamps in comments) */
    char again[256];
    snprintf(again, sizeof again, "%s/again.fits", dir);
    write_sample(again, true);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", path, again);
    assert_int_equal(system(cmd), 0);

    /* fitsverify, the HEASARC checker, agrees where installed */
    if (system("command -v fitsverify >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "fitsverify -q '%s' | grep -q '^verification OK'", path);
        assert_int_equal(system(cmd), 0);
    }
}

/* A header written to a file in memory reads back card for card as the
 * same header written to disk and read from there. */
static void test_memory_header(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/header.fits", dir);
    bfs_fits *disk = NULL, *mem = NULL;
    assert_int_equal(bfs_fits_create(path, &disk), 0);
    assert_int_equal(bfs_fits_create_mem(&mem), 0);
    bfs_fits *both[] = {disk, mem};
    for (int i = 0; i < 2; i++) {
        bfs_fits_add_image(both[i], 16, 0, NULL);
        bfs_fits_key_str(both[i], "OBSID", "MC_O_20250415_000060", "image name");
        bfs_fits_key_dbl(both[i], "MJD-BEG", 60780.123456789012, 12, NULL);
        bfs_fits_key_lng(both[i], "SEQNUM", 60, NULL);
        bfs_fits_key_log(both[i], "SIMULATE", false, NULL);
    }
    assert_int_equal(bfs_fits_close(disk), 0);
    bfs_fits_card *want = NULL, *got = NULL;
    size_t nwant = 0, ngot = 0;
    char *msg = NULL;
    assert_int_equal(bfs_fits_read_header(path, 1, &want, &nwant, &msg), 0);
    assert_int_equal(bfs_fits_header(mem, &got, &ngot), 0);
    assert_int_equal(bfs_fits_close(mem), 0);
    assert_int_equal(ngot, nwant);
    for (size_t i = 0; i < nwant; i++) {
        assert_string_equal(got[i].key, want[i].key);
        assert_string_equal(got[i].value, want[i].value);
        assert_int_equal(got[i].type, want[i].type);
    }
    assert_non_null(bfs_fits_find(got, ngot, "MJD-BEG"));
    free(want);
    free(got);
}

static void test_flipped_data(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/flip.fits", dir);
    write_sample(path, true);
    /* the last byte of the file is in the last extension's data unit
     * (64*32*4 = 8192 bytes of data padded to 8640) -- flip one inside */
    flip_byte(path, file_size(path) - 2880 - 100);
    char *msg = NULL;
    assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -EBADMSG);
    assert_non_null(msg);
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, "HDU 3 (Segment11)"));
    assert_non_null(strstr(msg, "DATASUM"));
    free(msg);

    /* advisory sums: counted and accepted */
    bfs_fits_summary sum;
    assert_int_equal(bfs_fits_validate(path, &(bfs_fits_rules){.sums_advisory = true}, &sum,
                                       &msg), 0);
    assert_null(msg);
    assert_int_equal(sum.n_bad_sums, 1);
    assert_int_equal(sum.n_checksums, 2);
}

static void test_flipped_header(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/hflip.fits", dir);
    write_sample(path, true);
    /* OBSID is the fifth card of the primary header: change one letter of
     * its value, keeping the card valid FITS */
    int fd = open(path, O_RDONLY);
    char hdr[2880];
    assert_int_equal(read(fd, hdr, sizeof hdr), 2880);
    close(fd);
    char *p = memmem(hdr, sizeof hdr, "MC_O_2025", 9);
    assert_non_null(p);
    flip_byte(path, (p - hdr) + 3);
    char *msg = NULL;
    assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -EBADMSG);
    assert_non_null(strstr(msg, "HDU 1"));
    assert_non_null(strstr(msg, "CHECKSUM"));
    free(msg);
}

/* A header byte FITS forbids (not printable ASCII) is refused, with the
 * card named, also when checksums are advisory and when there are none. */
static void test_header_byte(void **state)
{
    (void)state;
    for (int sums = 0; sums <= 1; sums++) {
        char path[256];
        snprintf(path, sizeof path, "%s/hbyte%d.fits", dir, sums);
        write_sample(path, sums);
        int fd = open(path, O_RDWR);
        char hdr[2880];
        assert_int_equal(read(fd, hdr, sizeof hdr), 2880);
        char *p = memmem(hdr, sizeof hdr, "MC_O_2025", 9);
        assert_non_null(p);
        assert_int_equal(pwrite(fd, "\xff", 1, (p - hdr) + 3), 1);
        close(fd);
        char *msg = NULL;
        assert_int_equal(bfs_fits_validate(path, &(bfs_fits_rules){.sums_advisory = true}, NULL, &msg), -EBADMSG);
        assert_non_null(strstr(msg, "HDU 1"));
        assert_non_null(strstr(msg, "(OBSID   ) holds the byte 0xff"));
        free(msg);
    }
}

static void test_truncated(void **state)
{
    char path[256];
    for (int sums = 0; sums < 2; sums++) {
        snprintf(path, sizeof path, "%s/trunc%d.fits", dir, sums);
        write_sample(path, sums);
        assert_int_equal(truncate(path, file_size(path) - 4000), 0);
        char *msg = NULL;
        assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -EBADMSG);
        assert_non_null(msg);
        assert_non_null(strstr(msg, "HDU 3"));
        assert_non_null(strstr(msg, "truncated"));
        free(msg);
    }
}

/* cut exactly at an HDU boundary: every HDU left is whole, so only the
 * primary header's NEXTEND can tell (a file without one passes) */
static void test_cut_at_hdu_boundary(void **state)
{
    char path[256];
    for (long nextend = -1; nextend <= 2; nextend += 3) {
        snprintf(path, sizeof path, "%s/cut%ld.fits", dir, nextend);
        write_sample_ext(path, true, nextend);
        assert_int_equal(bfs_fits_validate(path, NULL, NULL, NULL), 0);
        bfs_fits_extent *x = NULL;
        int n = 0;
        assert_int_equal(bfs_fits_extents(path, &x, &n, NULL), 0);
        assert_int_equal(n, 3);
        assert_int_equal(truncate(path, (off_t)x[2].head), 0); /* the last extension gone */
        free(x);
        char *msg = NULL;
        bfs_fits_summary sum;
        int rc = bfs_fits_validate(path, NULL, &sum, &msg);
        if (nextend < 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(sum.n_hdus, 2);
        } else {
            assert_int_equal(rc, -EBADMSG);
            assert_non_null(msg);
            assert_non_null(strstr(msg, "NEXTEND announces 2 extensions, the file ends after 1"));
        }
        free(msg);
    }
}

/* cut inside the primary header: cfitsio fails to open it; the reason
 * must still say truncated, not "not a FITS file" */
static void test_truncated_header(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/trunchdr.fits", dir);
    write_sample(path, 1);
    assert_int_equal(truncate(path, 1000), 0);
    char *msg = NULL;
    assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -EBADMSG);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "truncated"));
    free(msg);
}

static void test_not_fits(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/bad.fits.fz", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("This is bad data\n", fp);
    fclose(fp);
    char *msg = NULL;
    assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -EBADMSG);
    assert_non_null(strstr(msg, "not a FITS file"));
    /* says what is wrong, not cfitsio's "Error reading data buffer" */
    assert_non_null(strstr(msg, "17 bytes"));
    assert_non_null(strstr(msg, "SIMPLE"));
    assert_null(strstr(msg, "data buffer"));
    free(msg);

    snprintf(path, sizeof path, "%s/empty.fits", dir);
    fp = fopen(path, "w");
    fclose(fp);
    assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -EBADMSG);
    assert_non_null(strstr(msg, "not a FITS file: 0 bytes"));
    free(msg);

    snprintf(path, sizeof path, "%s/absent.fits", dir);
    assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -ENOENT);
    free(msg);

    /* extended file-name syntax is not interpreted: "x.fits[1]" is a name */
    char ok[256];
    snprintf(ok, sizeof ok, "%s/ok2.fits", dir);
    write_sample(ok, true);
    snprintf(path, sizeof path, "%s/ok2.fits[1]", dir);
    assert_int_equal(bfs_fits_validate(path, NULL, NULL, &msg), -ENOENT);
    free(msg);
}

static void test_too_many_hdus(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/many.fits", dir);
    write_sample(path, true);
    char *msg = NULL;
    assert_int_equal(bfs_fits_validate(path, &(bfs_fits_rules){.max_hdus = 2}, NULL, &msg), -EFBIG);
    assert_non_null(strstr(msg, "more than 2 HDUs"));
    free(msg);
}

static void test_gzip_and_compressed(void **state)
{
    char path[256], cmd[700];
    snprintf(path, sizeof path, "%s/z.fits", dir);
    write_sample(path, true);
    snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s/z.fits.gz'", path, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/z.fits.gz", dir);
    bfs_fits_summary sum;
    char *msg = NULL;
    assert_int_equal(bfs_fits_validate(path, NULL, &sum, &msg), 0);
    assert_true(sum.gzip);
    assert_int_equal(sum.n_hdus, 3);

    if (system("command -v fpack >/dev/null 2>&1") != 0) {
        print_message("fpack not installed: tile compression not tested\n");
        return;
    }
    snprintf(cmd, sizeof cmd, "fpack -O '%s/z.fits.fz' '%s/z.fits'", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/z.fits.fz", dir);
    assert_int_equal(bfs_fits_validate(path, NULL, &sum, &msg), 0);
    assert_int_equal(sum.n_hdus, 3);
    assert_int_equal(sum.n_compressed, 2);
    /* damage the compressed heap of the last HDU: decompression or its
     * checksum must fail */
    flip_byte(path, file_size(path) - 2880 - 40);
    assert_int_equal(bfs_fits_validate(path, NULL, &sum, &msg), -EBADMSG);
    assert_non_null(strstr(msg, "HDU 3"));
    free(msg);
}

/* Real raws (gzip-wrapped, tile-compressed, or plain MEFs with many HDUs):
 * each reads to its end.  The three test raws carry CHECKSUM and DATASUM
 * cards that do not match their data in every amplifier HDU (their pixels
 * were cut down for the upstream test suites; fitsverify says the same), so
 * they fail with strict sums and pass with advisory ones, which count 16. */
static void test_fixtures(void **state)
{
    const char *shared = getenv("BFS_SHARED");
    static const struct {
        const char *file;
        int bad_sums;
    } files[] = {
        {"ctrl_oods/3019053000001-R22-S00-det000.fits.fz", 16},
        {"obs_lsst/lsstCam-30211212000310/30211212000310-R22-S22-det098.fits", 16},
        {"obs_lsst/comCamSim/CC_S_20240404_000780_R22_S01.fits", 16},
        {"obs_lsst/guider/MC_C_20240918_000013_R00_SG0_guider.fits", 0},
    };
    int seen = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fixtures/fits/%s", shared ? shared : "../shared",
                 files[i].file);
        if (access(path, R_OK) != 0)
            continue;
        seen++;
        bfs_fits_summary sum;
        char *msg = NULL;
        int rc = bfs_fits_validate(path, NULL, &sum, &msg);
        if (rc)
            print_message("%s: %s\n", files[i].file, msg ? msg : "?");
        assert_int_equal(rc, files[i].bad_sums ? -EBADMSG : 0);
        free(msg);
        rc = bfs_fits_validate(path, &(bfs_fits_rules){.sums_advisory = true}, &sum, &msg);
        assert_int_equal(rc, 0);
        assert_int_equal(sum.n_bad_sums, files[i].bad_sums);
        assert_true(sum.n_hdus > 1);
        bfs_fits_card *cards = NULL;
        size_t n = 0;
        assert_int_equal(bfs_fits_read_header(path, 1, &cards, &n, &msg), 0);
        const bfs_fits_card *c = bfs_fits_find(cards, n, "OBSID");
        assert_non_null(c);
        assert_true(strlen(c->value) > 10);
        free(cards);
    }
    if (!seen)
        skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_memory_header),
        cmocka_unit_test(test_flipped_data),
        cmocka_unit_test(test_flipped_header),
        cmocka_unit_test(test_header_byte),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_cut_at_hdu_boundary),
        cmocka_unit_test(test_not_fits),
        cmocka_unit_test(test_too_many_hdus),
        cmocka_unit_test(test_gzip_and_compressed),
        cmocka_unit_test(test_fixtures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
