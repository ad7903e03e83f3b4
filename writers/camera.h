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
 * Threads: the lists built by rule are evaluated once, on the first call
 * (pthread_once), and are read-only after that; every function may be
 * called from any thread.
 */
#ifndef BFS_CAMERA_H
#define BFS_CAMERA_H

#include "registry.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct bfs_camera bfs_camera;

/* The camera whose registry instrument name ("LSSTCam", "LSSTComCam",
 * "LATISS", "LSSTCamSim", "LSSTComCamSim") or INSTRUME header spelling is
 * name, or NULL (also for NULL).  The spellings are those the obs_lsst
 * translators' can_translate() accept: "lsstCam"/"LSSTCam", "COMCAM"/
 * "ComCam", "ComCamSim", "LSSTCamSim", "LATISS", "LSST_ATISS".  The match is
 * case-insensitive and exact (obs_lsst lower-cases INSTRUME for all but
 * LATISS).  Not covered: 2019 lab ComCam headers that say INSTRUME =
 * 'LSST_CAMERA' with TELCODE = 'CC' (the caller looks up "ComCam" for
 * those), and the TELESCOP condition obs_lsst adds for the ComCam and sim
 * spellings. */
const bfs_camera *bfs_camera_find(const char *name);

/* The registry's instrument name ("LSSTCam"). */
const char *bfs_camera_name(const bfs_camera *c);

/* The camera code that starts its obs_id values (OBSID header,
 * "<code>_<controller>_<day_obs>_<seq_num>", e.g. "MC_O_20250415_000060"):
 * "MC" for LSSTCam and LSSTCamSim, "CC" for LSSTComCam and LSSTComCamSim,
 * "AT" for LATISS.  The simulated cameras share the real camera's code and
 * differ in the controller letter ("MC_S_...", "CC_S_...").  A convention,
 * not a guarantee: one early ComCamSim header in obs_lsst's tests says
 * OBSID = 'IM_P_20240117_000000'. */
const char *bfs_camera_obs_prefix(const bfs_camera *c);

/* The instrument record obs_lsst's Instrument.register() writes today
 * (detector_max, exposure_max, visit_max, visit_system, class_name).
 * Registries made by older obs_lsst versions hold other values (exposure_max
 * 6050123199999, LATISS detector_max 0); a repository's own record wins. */
void bfs_camera_instrument(const bfs_camera *c, bfs_instrument_record *out);

/* The raw formatter class, e.g. "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter". */
const char *bfs_camera_raw_formatter(const bfs_camera *c);

/* Detectors: how many, and the i-th (0 <= i < n) in id order.  Ids run
 * 0..n-1 without gaps, so i is the detector id.  bfs_camera_detector fills
 * *out (strings in static storage; instrument is the camera's name) and
 * returns 0, or -ENOENT when i is out of range. */
int bfs_camera_n_detectors(const bfs_camera *c);
int bfs_camera_detector(const bfs_camera *c, int i, bfs_detector_record *out);

/* The sensor type of detector i from the raft's policy file: "E2V", "ITL",
 * "ITL_G" (guider), "ITL_WF" (wavefront); NULL when i is out of range.  Not
 * a registry column; the synthetic raws use it for the amplifier layout. */
const char *bfs_camera_detector_type(const bfs_camera *c, int i);

/* How many amplifiers detector i reads out, each one image extension of its
 * raw (obs_lsst's raw formatter reads the n-th amplifier from the n-th
 * extension after the primary HDU): 16 for "E2V", "ITL" and "ITL_G", 8 for
 * "ITL_WF" (a wavefront half-sensor).  -ENOENT when i is out of range. */
int bfs_camera_n_amplifiers(const bfs_camera *c, int i);

/* The detector id of a RAFTBAY/CCDSLOT header pair ("R22", "S11" -> 94;
 * "R00", "SG0" -> 189), -ENOENT when the camera has no such detector,
 * -EINVAL when c, raftbay or ccdslot is NULL.  Values are compared exactly
 * (headers write them in upper case).  LATISS has one detector and obs_lsst
 * gives it the constant detector number 0 without reading RAFTBAY or
 * CCDSLOT (its headers say "R00"/"S00" while the registry's name is
 * RXX_S00), so for LATISS the result is 0 whatever the pair, NULLs
 * included. */
int bfs_camera_detector_id(const bfs_camera *c, const char *raftbay, const char *ccdslot);

/* Physical filters: how many, the i-th (definition order, as in the
 * fixture CSVs; both NULL when i is out of range), and the band of one
 * (NULL when the camera does not define that physical filter; the match is
 * exact).  A "~" in a name joins filter-wheel positions ("SDSSg~ND_OD0.5")
 * and is part of the one physical_filter value. */
int bfs_camera_n_filters(const bfs_camera *c);
void bfs_camera_filter(const bfs_camera *c, int i, const char **physical_filter,
                       const char **band);
const char *bfs_camera_band(const bfs_camera *c, const char *physical_filter);

/* Register c's instrument, detector and physical_filter records through the
 * registry write API (idempotent: records already there are not errors;
 * a different record under the same key is -EEXIST).  Call inside the
 * caller's transaction and roll back on failure: it stops at the first
 * error and returns it (negative errno from the registry, -EINVAL for a
 * NULL argument). */
int bfs_camera_register(bfs_registry *reg, const bfs_camera *c);

#endif
