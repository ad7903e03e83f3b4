#!/usr/bin/env bash
# test_ingest_mount.sh - a writable mount (-o rw): files written with cp are
# ingested at close, and close() says how it went (docs/ingest.md).
#
# Checks: a mount without -o rw refuses writes (EROFS); with it, mkdir -p of a
# new RUN and a full dataId path, then cp of a FITS file, registers one
# dataset whose bytes read back through the mount and sit under the datastore
# root; the same bytes again succeed (a duplicate); other bytes at the same
# dataId fail with EEXIST and are quarantined with a reason (a raw whose
# headers give another dataId than its path fails with EINVAL); a truncated FITS
# fails with EINVAL and is quarantined; a CHAINED collection takes no files;
# rm of a dataset is refused; an event line is written per outcome; a second
# -o rw daemon on the same repository is refused; a listing taken while a
# file was written shows the dataset right after close, and so do the
# cached listings above a raw written in its RUN's directory; after a remount the
# dataset is still there; butlerfs status counts the outcomes; an inbox name
# is not changed in place once ingested, written anew (cp again) it is a
# duplicate or EEXIST, and it leaves the listing after inbox_ttl; so does a
# file at a dataId path written again, under its own name or the dataset's
# (which a reader holding it open never sees change); mkdir'd
# directories are listed before any file makes them real, and rmdir
# removes an empty one (not one holding anything); a file created and
# never written (touch) can be removed, one being written cannot; a file
# created and never written leaves nothing in the spool at unmount; a made
# path level with a RUN below it takes no files (EACCES), and every refused
# create is logged with its reason; SIGUSR1 opens a rotated log file anew.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 2 --fits >/dev/null 2>&1 || fail "synth"
mkdir -p "$T/mnt" "$T/mnt2"
chmod 755 "$T/repo"
count() { sqlite3 "$T/repo/gen3.sqlite3" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = '$1'"; }

# read-only unless asked
mount_repo "$T/repo" "$T/mnt" || finish
SRC=$(find "$T/mnt/LSSTCam/raw/all/raw" -name '*.fits' | sort | head -1)
[ -n "$SRC" ] || fail "no synthetic raw in the mount"
cp "$SRC" "$T/raw.fits"
DET=$(basename "$(dirname "$(dirname "$SRC")")" | sed 's/detector=//')
EXP=$(basename "$(dirname "$SRC")" | sed 's/exposure=//')
mkdir "$T/mnt/newrun" 2>"$T/err.txt"
expect "a mount without -o rw refuses mkdir (EROFS)" grep -q "Read-only file system" "$T/err.txt"
unmount

printf 'ingest:\n  inbox_ttl: 5s\n' >"$T/cfg.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
D="$T/mnt/u/me/run1/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
expect "mkdir -p of a new RUN and a full dataId path" mkdir -p "$D"
# directories made by mkdir are listed in their parents before any file makes them real
mkdir -p "$T/mnt/made/level/one" "$D/../exposure=MC_O_20250415_000001"
expect "ls shows the directories mkdir made (path levels, a RUN to be, a dimension value)" \
    bash -c "ls '$T/mnt' | grep -qx made && test \"\$(ls '$T/mnt/made')\" = level &&
             test \"\$(ls '$T/mnt/made/level')\" = one && ls '$T/mnt/u/me/run1/raw' | grep -qx instrument=LSSTCam &&
             ls '$D/..' | grep -qx exposure=$EXP && ls '$D/..' | grep -qx exposure=MC_O_20250415_000001"
mkdir "$D/../../detector=0$DET" 2>"$T/err.txt"
expect "mkdir of a dimension value with a leading zero is EINVAL" grep -q "Invalid argument" "$T/err.txt"
expect "... and the log says why" grep -q "cannot create directory /u/me/run1/raw/instrument=LSSTCam/detector=0$DET in the mount (Invalid argument): an integer is written as printf" "$BFS_LOG"
mkdir "$D/sub" 2>"$T/err.txt"
expect "mkdir below a full dataId is EACCES, and the log says why" \
    bash -c "grep -q 'Permission denied' '$T/err.txt' && grep -q 'cannot create directory /u/me/run1/.*/sub in the mount (Permission denied): below a full dataId there are files only' '$BFS_LOG'"
expect "cp of a FITS file to the dataId path succeeds (close returned 0)" cp "$T/raw.fits" "$D/x.fits"
expect "one dataset registered in RUN u/me/run1" test "$(count u/me/run1)" = 1
sleep 0.2
F=$(find "$D" -type f -name '*.fits' ! -name x.fits | head -1)
expect "the dataset shows under its dataId with the datastore's name" test -n "$F"
expect "... and its bytes are the written bytes" cmp "$T/raw.fits" "$F"
expect "the file is under the datastore root, in the run's directory" \
    bash -c "find '$T/repo/u/me/run1' -type f -name '*.fits' | grep -q ."
# the datastore root is 0755: others may read what is in it (the Python
# Butler run by another user, staging trees read by other services)
expect "... readable by others as the datastore root is (0644), not private like the spool" \
    test "$(find "$T/repo/u/me/run1" -type f -name '*.fits' -printf '%m\n' | sort -u)" = 644
# u/me was made by mkdir -p, and has the RUN u/me/run1 below it now: it is a
# path level of existing collections, which takes no files (as after a
# remount), and never becomes a RUN named u/me through a stray write
printf 'notes\n' >"$T/notes.txt"
cp "$T/notes.txt" "$T/mnt/u/me/" 2>"$T/err.txt"
expect "a file written into a made path level that has a RUN below it is EACCES" grep -q "Permission denied" "$T/err.txt"
expect "... it registers no collection u/me" \
    test "$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT count(*) FROM collection WHERE name = 'u/me'")" = 0
expect "... and the log says why" grep -q "cannot create file /u/me/notes.txt in the mount (Permission denied): a path level of existing collections" "$BFS_LOG"
cp "$T/notes.txt" "$T/mnt/" 2>"$T/err.txt"
expect "a file at the mount's root is refused, and the log says why" grep -q "cannot create file /notes.txt in the mount (Permission denied): the mount's root" "$BFS_LOG"
# log rotation: logrotate renames the file, then kill -USR1 opens it again by its name
mv "$BFS_LOG" "$BFS_LOG.1"
kill -USR1 "$BFS_PID"
for _ in $(seq 100); do [ -e "$BFS_LOG" ] && break; sleep 0.05; done
cp "$T/notes.txt" "$T/mnt/u/" 2>/dev/null
expect "after a rename of the log and SIGUSR1, new lines go to a new file of the log's name" \
    bash -c "grep -q 'cannot create file /u/notes.txt' '$BFS_LOG' && ! grep -q 'cannot create file /u/notes.txt' '$BFS_LOG.1'"
expect "... the old file kept the earlier lines" grep -q 'cannot create file /notes.txt' "$BFS_LOG.1"
expect "... and the mount is still served (SIGUSR1 does not stop the daemon)" bfs_is_mounted "$T/mnt"
expect "the same bytes again succeed (an identical duplicate)" cp "$T/raw.fits" "$D/again.fits"
expect "... and register nothing new" test "$(count u/me/run1)" = 1

head -c 5000 "$T/raw.fits" >"$T/cut.fits"
D2="$T/mnt/u/me/run2/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
mkdir -p "$D2"
cp "$T/cut.fits" "$D2/cut.fits" 2>"$T/err.txt"
expect "a truncated FITS at a free dataId fails at close with EINVAL" grep -q "Invalid argument" "$T/err.txt"
expect "... its event says status 1, EINVAL, quarantined, truncated" python3 -c "
import json, os, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
bad = [e for e in ev if e.get('run') == 'u/me/run2']
assert len(bad) == 1 and bad[0]['status'] == 1 and bad[0]['errno'] == 'EINVAL' and bad[0]['outcome'] == 'quarantined', bad
# the reason says what is wrong, and names no spool file (the bytes are in quarantine now)
assert 'truncated' in bad[0]['description'] and '/spool/' not in bad[0]['description'], bad[0]['description']
# and says where the bytes went: the quarantined copy, whole, with its reason beside it
q = bad[0]['quarantined']
assert q.startswith(sys.argv[2] + '/') and q.endswith('.data'), q
assert open(q, 'rb').read() == open(sys.argv[3], 'rb').read(), 'the quarantined bytes differ from the written ones'
assert 'truncated' in open(q[:-len('.data')] + '.reason').read()
# and it stays private, as it was in the spool
assert os.stat(q).st_mode & 0o777 == 0o600, oct(os.stat(q).st_mode)
" "$T/repo/.butlerfs/events.jsonl" "$T/repo/.butlerfs/quarantine" "$T/cut.fits"
expect "... and nothing is registered there" test "$(count u/me/run2)" = 0
OTHER=$(find "$T/mnt/LSSTCam/raw/all/raw" -name '*.fits' | sort | tail -1)
# a raw's headers give its dataId, also at a path: other bytes of the same
# dataId are a raw of the same exposure and detector with other pixels
"$BFS_BIN" synth "$T/src-px" --exposures 1 --detectors 2 --fits --payload 3000000 >/dev/null 2>&1 ||
    fail "synth of raws of the same dataIds with other bytes"
SAME_OTHER=$T/src-px/$(sqlite3 "$T/src-px/gen3.sqlite3" "SELECT r.path FROM file_datastore_records r JOIN dataset_tags_00000001 t ON t.dataset_id = r.dataset_id WHERE t.detector = $DET AND t.exposure = $EXP")
cmp -s "$SAME_OTHER" "$T/raw.fits" && fail "the raw with other pixels has the same bytes"
cp "$SAME_OTHER" "$D/other.fits" 2>"$T/err.txt"
expect "other bytes at a dataId that has a dataset fail with EEXIST" grep -q "File exists" "$T/err.txt"
cp "$OTHER" "$D/wrong.fits" 2>"$T/err.txt"
expect "a raw whose headers give another dataId than its path fails with EINVAL" grep -q "Invalid argument" "$T/err.txt"
expect "rejected bytes are quarantined with a reason" \
    bash -c "test \$(find '$T/repo/.butlerfs/quarantine' -name '*.data' | wc -l) -ge 2 &&
             test \$(find '$T/repo/.butlerfs/quarantine' -name '*.reason' | wc -l) -ge 2"
expect "the quarantine is private" test "$(stat -c %a "$T/repo/.butlerfs")" = 700
expect "an event line per outcome" \
    bash -c "test \$(wc -l <'$T/repo/.butlerfs/events.jsonl') -ge 3 && python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' '$T/repo/.butlerfs/events.jsonl'"
status_until "$T/mnt" "$T/s.json" '"quarantined": *3'
expect "status --json counts the outcomes (1 ingested, 1 duplicate, 3 quarantined)" python3 - "$T/s.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))[0]["ingest"]
assert (i["ingested"], i["duplicates"], i["quarantined"], i["in_flight"]) == (1, 1, 3, 0), i
PY
expect "... and butlerfs status says it in words" \
    bash -c "'$BFS_BIN' status '$T/mnt' | grep -q '^  ingest       1 ingested, 1 duplicates, 3 quarantined'"
expect "... with the node table" bash -c "'$BFS_BIN' status '$T/mnt' | grep -q '^  nodes        [0-9]* known to the kernel (cap 49152)'"
rm -f "$F" 2>"$T/err.txt"
expect "rm of a dataset is refused (EPERM)" bash -c "test -e '$F' && grep -q 'Operation not permitted' '$T/err.txt'"
expect "symlink, hard link and mkfifo in a RUN are refused with EPERM" python3 - "$T/mnt/u/me/run1" "$F" <<'PY'
import errno, os, sys
d, f = sys.argv[1], sys.argv[2]
for what, call in (("symlink", lambda: os.symlink("x", d + "/s")), ("link", lambda: os.link(f, d + "/h")),
                   ("mkfifo", lambda: os.mkfifo(d + "/p"))):
    try:
        call()
        sys.exit(what + " succeeded")
    except OSError as e:
        assert e.errno == errno.EPERM, (what, e)
PY

# a name being written: a second open for writing is ETXTBSY (a second
# writer's close would seal the first one's file half-written)
D3="$T/mnt/u/me/run3/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
mkdir -p "$D3"
expect "a second open for writing of a name being written is ETXTBSY, a read-only one EBUSY; the first writer's close is 0" \
    python3 - "$D3" "$T/raw.fits" <<'PY'
import errno, os, sys
d, src = sys.argv[1], open(sys.argv[2], "rb").read()
fd = os.open(d + "/y.fits", os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, src[: len(src) // 2])
try:
    os.open(d + "/y.fits", os.O_WRONLY)
    sys.exit("a second open for writing succeeded")
except OSError as e:
    assert e.errno == errno.ETXTBSY, e
# a reader never sees the half-written bytes: a read-only open is EBUSY
try:
    os.open(d + "/y.fits", os.O_RDONLY)
    sys.exit("a read-only open of a half-written file succeeded")
except OSError as e:
    assert e.errno == errno.EBUSY, e
os.write(fd, src[len(src) // 2:])
os.close(fd)
# once ingested, the name reads back as the dataset
assert open(d + "/y.fits", "rb").read() == src
PY
expect "... and the whole file is registered" test "$(count u/me/run3)" = 1

# a listing taken while a file is written into its dataId directory (empty
# then) must not outlive the ingest: the kernel caches listings until the
# directory's attributes time out (10 s) unless the daemon drops them
D4="$T/mnt/u/me/run4/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
mkdir -p "$D4"
expect "a listing taken during a write shows the dataset right after close" \
    python3 - "$D4" "$T/raw.fits" <<'PY'
import os, sys
d, src = sys.argv[1], open(sys.argv[2], "rb").read()
with open(d + "/z.fits", "wb") as f:
    f.write(src[: len(src) // 2])
    f.flush()
    before = os.listdir(d)
    f.write(src[len(src) // 2:])
after = os.listdir(d)
assert len(after) == 1 and after[0].endswith(".fits"), (before, after)
PY

# a raw written in its RUN's own directory lands at a dataId path nobody
# listed or made: the directories above it whose listings were cached
# before (the type's, the instrument's) show it right after close
mkdir -p "$T/mnt/u/me/run5"
cp "$T/raw.fits" "$T/mnt/u/me/run5/first.fits"
ls -R "$T/mnt/u/me/run5" >/dev/null
DET2=$(basename "$(dirname "$(dirname "$OTHER")")" | sed 's/detector=//')
cp "$OTHER" "$T/mnt/u/me/run5/second.fits"
expect "listings cached before a raw was written in its RUN's directory show its dataId right after close" \
    bash -c "test '$DET2' != '$DET' && ls '$T/mnt/u/me/run5/raw/instrument=LSSTCam' | grep -qx 'detector=$DET2' &&
             ls '$T/mnt/u/me/run5/raw/instrument=LSSTCam/detector=$DET2' | grep -qx 'exposure=$EXP'"

# writers at once into RUNs that do not exist yet: each RUN is made once, every close is 0
DETS=$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT DISTINCT detector FROM dataset_tags_00000001")
par_ok=1
for k in 1 2 3 4 5; do
    pids=()
    for det in $DETS; do
        pd="$T/mnt/par/$k/raw/instrument=LSSTCam/detector=$det/exposure=$EXP"
        own=$(find "$T/mnt/LSSTCam/raw/all/raw/instrument=LSSTCam/detector=$det/exposure=$EXP" -type f | head -1)
        mkdir -p "$pd" && { cp "$own" "$pd/x.fits" & pids+=($!); }
    done
    for p in "${pids[@]}"; do wait "$p" || par_ok=0; done
    [ "$(count "par/$k")" = "$(echo "$DETS" | wc -w)" ] || par_ok=0
done
expect "parallel writers into new RUNs: every cp succeeds and every file is registered" test "$par_ok" = 1

# a name written in a RUN's own directory (its inbox): listed for
# ingest.inbox_ttl (5 s here) and no longer, although the kernel keeps the
# references ls -l and stat gave it.  Until then it cannot be changed in
# place, but written anew (O_TRUNC: a copy run twice) it is a new upload:
# the same bytes a duplicate, other bytes of its dataId EEXIST
I="$T/mnt/u/me/inbox"
mkdir -p "$I"
"$BFS_BIN" synth "$T/src2" --exposures 1 --detectors 1 --first-seq 90 --fits >/dev/null 2>&1 || fail "synth of a raw of another exposure"
R1=$(find "$T/src2/LSSTCam/raw/all" -name '*.fits' | head -1)
# the same exposure and detector, other pixels: a valid raw of the same dataId
# (made before the writes below: the checks after them must fall within
# the 5 s inbox_ttl of this test's configuration)
"$BFS_BIN" synth "$T/src3" --exposures 1 --detectors 1 --first-seq 90 --fits --payload 3000000 >/dev/null 2>&1 ||
    fail "synth of a raw of the same dataId with other bytes"
expect "cp of a raw into a RUN's own directory succeeds" cp "$R1" "$I/r.fits"
ls -l "$I" >/dev/null
expect "an ingested inbox name cannot be changed in place (EPERM) without O_TRUNC" \
    python3 - "$I/r.fits" <<'PY'
import errno, os, sys
for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND):
    try:
        os.close(os.open(sys.argv[1], flags))
        sys.exit("open with flags %#o succeeded" % flags)
    except OSError as e:
        assert e.errno == errno.EPERM, (flags, e)
PY
expect "... and shows as writable (mode 644) while its dataId path is read-only (444)" \
    test "$(stat -c %a "$I/r.fits")/$(stat -c %a "$(find "$T/mnt/u/me/inbox/raw" -type f | head -1)")" = 644/444
expect "cp of the same raw to the same name again succeeds (a duplicate)" cp "$R1" "$I/r.fits"
expect "... its event says duplicate" \
    bash -c "tail -1 '$T/repo/.butlerfs/events.jsonl' | grep -q '\"outcome\": *\"duplicate\"'"
expect "... and the name is listed once" test "$(ls "$I" | grep -c '^r.fits$')" = 1
cp "$(find "$T/src3/LSSTCam/raw/all" -name '*.fits' | head -1)" "$I/r.fits" 2>"$T/err.txt"
expect "other bytes of its dataId written to the same name fail (EEXIST)" grep -q "File exists" "$T/err.txt"
expect "... the name still shows the ingested bytes" cmp -s "$R1" "$I/r.fits"
expect "... and is listed once" test "$(ls "$I" | grep -c '^r.fits$')" = 1
expect "... one dataset in that RUN" test "$(count u/me/inbox)" = 1
mkdir -p "$T/mnt/u/me/inbox2"
cp "$R1" "$I/moved.fits"
mv "$I/moved.fits" "$T/mnt/u/me/inbox2/" 2>"$T/err.txt"
expect "mv of an ingested name to another RUN's directory fails (EPERM, not a copy and an unlink)" \
    bash -c "grep -q 'Operation not permitted' '$T/err.txt' && test \"\$(ls '$T/mnt/u/me/inbox2')\" = ''"
expect "... and ingests nothing there" test "$(count u/me/inbox2)" = 0
cp "$R1" "$I/twice.fits" && cp "$R1" "$I/twice.fits"
expect "rm of a name written twice removes the name (the first upload of it too)" \
    bash -c "rm '$I/twice.fits' && ! ls '$I' | grep -qx twice.fits && ! stat '$I/twice.fits' 2>/dev/null"

# a file at a dataId path written again (a copy run twice): under the name
# the writer gave, and under the dataset's own name; the same bytes are a
# duplicate, other bytes EEXIST, and the dataset never changes.  A reader
# that had the dataset open reads its bytes throughout.
P="$T/mnt/u/me/again/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
mkdir -p "$P"
cp "$T/raw.fits" "$P/mine.fits"
stat "$P/mine.fits" >/dev/null 2>&1 && within=1 || within=0   # still within inbox_ttl?
expect "cp to a dataId path under the same name again succeeds (a duplicate; within the name's ttl: $within)" \
    cp "$T/raw.fits" "$P/mine.fits"
DS=$(find "$P" -type f -name '*.fits' ! -name mine.fits | head -1)
expect "cp to the dataset's own name with the same bytes succeeds (a duplicate)" cp "$T/raw.fits" "$DS"
expect "... its event says duplicate" \
    bash -c "tail -1 '$T/repo/.butlerfs/events.jsonl' | grep -q '\"outcome\": *\"duplicate\"'"
expect "cp -p to the dataset's own name succeeds too" cp -p "$T/raw.fits" "$DS"
rm -f "$DS" 2>"$T/err.txt"
expect "... and rm of the dataset's own name right after is still refused (EPERM), the dataset stays" \
    bash -c "test -e '$DS' && grep -q 'Operation not permitted' '$T/err.txt'"
expect "the dataset's own name with other bytes: EEXIST, the dataset unchanged, a reader undisturbed" \
    python3 - "$DS" "$SAME_OTHER" "$T/raw.fits" <<'PY'
import errno, os, sys
ds, other, orig = sys.argv[1:]
want = open(orig, "rb").read()
reader = open(ds, "rb")
head = reader.read(2880)
fd = os.open(ds, os.O_WRONLY | os.O_TRUNC)
os.write(fd, open(other, "rb").read())
try:
    os.close(fd)
    sys.exit("close of other bytes at a dataset's own name succeeded")
except OSError as e:
    assert e.errno == errno.EEXIST, e
assert head + reader.read() == want, "the open reader saw other bytes"
assert os.stat(ds).st_size == len(want), os.stat(ds).st_size
assert open(ds, "rb").read() == want, "the dataset changed"
for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_RDONLY | os.O_TRUNC):
    try:
        os.close(os.open(ds, flags))
        sys.exit("open of a dataset with flags %#o succeeded" % flags)
    except OSError as e:
        assert e.errno == errno.EPERM, (flags, e)
PY
expect "... one dataset in that RUN" test "$(count u/me/again)" = 1
touch "$I/empty.fits"
expect "a name created and never written (touch) is listed" bash -c "ls '$I' | grep -qx empty.fits"
expect "... and rm removes it at once" bash -c "rm '$I/empty.fits' && ! ls '$I' | grep -qx empty.fits"
expect "rm of a name open for writing with nothing written yet is EBUSY, of one with bytes EPERM" \
    python3 - "$I/busy.fits" <<'PY'
import errno, os, sys
def errno_of(call, *args):
    try:
        call(*args)
        return 0
    except OSError as e:
        return e.errno
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
assert errno_of(os.unlink, sys.argv[1]) == errno.EBUSY, "open for writing, nothing written"
os.write(fd, b"x" * 100)
assert errno_of(os.unlink, sys.argv[1]) == errno.EPERM, "with bytes"
# 100 bytes named .fits: not FITS, refused and quarantined at the close
assert errno_of(os.close, fd) == errno.EINVAL
PY
touch "$I/empty.fits"
sleep 5.5
expect "the inbox name leaves the listing after ingest.inbox_ttl" bash -c "! ls '$I' | grep -q '^r.fits'"
expect "... and is not found by name" bash -c "! stat '$I/r.fits' >/dev/null 2>&1"
expect "... while the raw stays at its dataId path" test "$(count u/me/inbox)" = 1

# rmdir undoes a mkdir of an empty directory; a directory holding anything stays
mkdir "$T/mnt/made/typo"
expect "rmdir of an empty directory mkdir made removes it" \
    bash -c "rmdir '$T/mnt/made/typo' && ! ls '$T/mnt/made' | grep -qx typo && test ! -e '$T/mnt/made/typo'"
expect "... and mkdir makes it again" \
    bash -c "mkdir '$T/mnt/made/typo' && ls '$T/mnt/made' | grep -qx typo && rmdir '$T/mnt/made/typo'"
rmdir "$T/mnt/made/level" 2>"$T/err.txt"
expect "rmdir of a made directory with a directory in it is ENOTEMPTY" grep -q "Directory not empty" "$T/err.txt"
rmdir "$T/mnt/u/me/run1" 2>"$T/err.txt"
expect "rmdir of a RUN that holds datasets is refused (EPERM)" grep -q "Operation not permitted" "$T/err.txt"
rmdir "$D" 2>"$T/err.txt"
expect "rmdir of a made dataId directory that now holds a dataset is ENOTEMPTY" \
    grep -q "Directory not empty" "$T/err.txt"
rmdir "$T/mnt/LSSTCam/raw/all/raw/instrument=LSSTCam/detector=$DET" 2>"$T/err.txt"
expect "rmdir of a directory the registry holds (not made by mkdir) is EPERM" \
    grep -q "Operation not permitted" "$T/err.txt"
D6="$T/mnt/u/me/run1/raw/instrument=LSSTCam/detector=$DET/exposure=2025041500099"
mkdir "$D6"
expect "rmdir of a made dataId directory while a file is written in it is ENOTEMPTY" \
    python3 - "$D6" <<'PY'
import errno, os, sys
fd = os.open(sys.argv[1] + "/w.fits", os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"SIMPLE")
try:
    os.rmdir(sys.argv[1])
    sys.exit("rmdir succeeded under a writer")
except OSError as e:
    assert e.errno == errno.ENOTEMPTY, e
finally:
    try:
        os.close(fd)  # a 6-byte file: refused and quarantined
    except OSError:
        pass
PY
expect "... and once that file is refused, rmdir removes the directory" rmdir "$D6"

# a dataId another dataset holds (the Python Butler gives most dataset types
# random ids, not butlerfs's UUIDv5): refused, the other one untouched
D9="$T/mnt/u/me/run9/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
mkdir -p "$D9" && cp "$T/raw.fits" "$D9/x.fits"
# ids are 32 hex digits as text (butlerfs init) or 16-byte BLOBs: both handled
old_id=$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT CASE typeof(d.id) WHEN 'blob' THEN lower(hex(d.id)) ELSE d.id END FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'u/me/run9'")
new_id=0123456789abcdef0123456789abcdef
set_id() { echo "UPDATE $1 SET $2 = CASE typeof($2) WHEN 'blob' THEN X'$new_id' ELSE '$new_id' END WHERE $2 = X'$old_id' OR $2 = '$old_id';"; }
sqlite3 "$T/repo/gen3.sqlite3" "PRAGMA foreign_keys = OFF; BEGIN; $(set_id dataset id) $(set_id dataset_tags_00000001 dataset_id)
    $(set_id file_datastore_records dataset_id) $(set_id dataset_location dataset_id) COMMIT;"
cp "$T/raw.fits" "$D9/y.fit" 2>"$T/err.txt"
expect "a file at a dataId held by a dataset of another id fails (EEXIST)" grep -q "File exists" "$T/err.txt"
expect "... the reason says another dataset has the dataId" \
    grep -q "another dataset (not $old_id) already has this dataId in u/me/run9" $T/repo/.butlerfs/quarantine/*/*.reason
expect "... and the run still holds that one dataset, with one file" \
    test "$(count u/me/run9)/$(find "$T/repo/u/me/run9" -type f | wc -l)" = 1/1
# a name that says FITS is validated as FITS, whatever the bytes begin with
D10="$T/mnt/u/me/run10/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
mkdir -p "$D10"
printf 'these bytes are no FITS file\n' >"$T/junk.fits"
cp "$T/junk.fits" "$D10/junk.fits" 2>"$T/err.txt"
expect "a file named .fits whose bytes are not FITS fails at a dataId path (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
expect "... and nothing is registered there" test "$(count u/me/run10)" = 0

# a second writer daemon on the same repository
timeout 20 "$BFS_BIN" mount "$T/repo" "$T/mnt2" -f -o rw,log="$T/second.log" </dev/null >"$T/second.err" 2>&1
rc=$?
expect "a second -o rw daemon on the repository exits non-zero, by itself" test "$rc" -ne 0 -a "$rc" -ne 124
expect "... on the terminal, in one sentence, before mounting" \
    bash -c "grep -q '^butlerfs: another butlerfs -o rw mount serves $T/repo' '$T/second.err' && ! mountpoint -q '$T/mnt2'"
fusermount3 -u "$T/mnt2" 2>/dev/null
unmount
expect "a file created and closed without bytes (touch) leaves nothing in the spool at unmount" \
    test -z "$(ls "$T/repo/.butlerfs/spool")"

mount_repo "$T/repo" "$T/mnt" || finish
expect "after a remount the ingested dataset reads back" \
    bash -c "cmp '$T/raw.fits' \"\$(find '$T/mnt/u/me/run1/raw' -type f | head -1)\""
unmount
expect_no_sanitizer
finish
