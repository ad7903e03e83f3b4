/*
 * camera.h - butlerfs's own encoding of the facts about the Rubin cameras
 * that raw ingest needs: the instrument record, the detectors, the physical
 * filters and their bands, and the raw formatter, for LSSTCam, LSSTComCam,
 * LATISS and their simulated variants (LSSTCamSim, LSSTComCamSim).
 *
 * The authority is obs_lsst (the instrument classes in _instrument.py,
 * policy/rafts.yaml and the per-raft policies, filters.py); the tables of
 * ../shared/fixtures/cameras/ are the same facts evaluated, and
 * tests/unit/test_camera.c compares every row with this encoding.  The facts
 * are encoded by rule where obs_lsst has a rule (detector id = raft id0 +
 * slot index; filter lists built from a few parts), so the tables here stay
 * small enough to read.
 *
 * A camera found in a repository's own records wins over this encoding
 * (raw ingest reads the repository first); this encoding only registers an
 * instrument the repository does not hold yet (bfs_camera_register).
 *
 * Ownership: every pointer handed out points to static storage that lives as
 * long as the program; nothing is freed by the caller.
 * Threads: everything here is read-only after load and may be called from
 * any thread.
 */
#ifndef BFS_CAMERA_H
#define BFS_CAMERA_H

#include "registry.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct bfs_camera bfs_camera;

/* The camera whose registry instrument name ("LSSTCam", "LSSTComCam",
 * "LATISS", "LSSTCamSim", "LSSTComCamSim") or INSTRUME header spelling
 * ("lsstCam", "LSSTCam", "COMCAM", "ComCam", "LSSTComCam", "LATISS",
 * "LSSTCamSim", "LSSTComCamSim", ... as the obs_lsst translators accept
 * them; case-insensitive) is name, or NULL. */
const bfs_camera *bfs_camera_find(const char *name);

/* The registry's instrument name ("LSSTCam"). */
const char *bfs_camera_name(const bfs_camera *c);

/* The two-letter prefix of its obs_id values and file names ("MC", "CC",
 * "AT", "MC" for LSSTCamSim? see the source: obs_lsst's CONTRLLR/obs_id
 * conventions). */
const char *bfs_camera_obs_prefix(const bfs_camera *c);

/* The instrument record obs_lsst registers (detector_max, exposure_max,
 * visit_max, visit_system, class_name). */
void bfs_camera_instrument(const bfs_camera *c, bfs_instrument_record *out);

/* The raw formatter class, e.g. "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter". */
const char *bfs_camera_raw_formatter(const bfs_camera *c);

/* Detectors: how many, and the i-th (0 <= i < n) in id order.  The strings
 * in *out point to static storage. */
int bfs_camera_n_detectors(const bfs_camera *c);
int bfs_camera_detector(const bfs_camera *c, int i, bfs_detector_record *out);

/* The detector id of a RAFTBAY/CCDSLOT header pair ("R22", "S11" -> 94;
 * LATISS: "R00", "S00" -> 0), or -ENOENT. */
int bfs_camera_detector_id(const bfs_camera *c, const char *raftbay, const char *ccdslot);

/* Physical filters: how many, the i-th (definition order, as in the
 * fixture CSVs), and the band of one (NULL when the camera does not define
 * that physical filter). */
int bfs_camera_n_filters(const bfs_camera *c);
void bfs_camera_filter(const bfs_camera *c, int i, const char **physical_filter,
                       const char **band);
const char *bfs_camera_band(const bfs_camera *c, const char *physical_filter);

/* Register c's instrument, detector and physical_filter records through the
 * registry write API (idempotent: records already there are not errors).
 * Call inside the caller's transaction; negative errno from the registry. */
int bfs_camera_register(bfs_registry *reg, const bfs_camera *c);

#endif
