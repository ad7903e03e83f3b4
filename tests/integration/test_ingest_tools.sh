#!/usr/bin/env bash
# test_ingest_tools.sh - everyday tools writing raws into an -o rw mount:
# cp, cp -p, install, dd, cat >, tar x, rsync, Python open/write/close, and
# cfitsio's fits_create_file writing straight into the mount (hdr2fits);
# mkdir, cp, rsync, touch and rm again by the mount's owner without root's
# override of file modes (the kernel checks the modes the mount shows).
# Each writes one synthetic raw (its own exposure and detector) into a RUN's
# directory; each must exit 0, and the raw must be registered once with the
# bytes written.  A tool's failure must be reported by its exit status.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
command -v python3 >/dev/null || skip "python3 not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 2 --detectors 6 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt"
mapfile -t RAWS < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
q() { sqlite3 "$T/repo/gen3.sqlite3" "$1"; }
mount_repo "$T/repo" "$T/mnt" rw || finish
R=$T/mnt/LSSTCam/raw/all
mkdir -p "$R"
n=0
# registered(i): the raw RAWS[i] is a dataset of the repository, with the same bytes
registered() {
    local src=${RAWS[$1]} id
    id=$(sqlite3 "$T/src/gen3.sqlite3" "SELECT lower(hex(d.id)) FROM dataset d JOIN file_datastore_records r ON r.dataset_id = d.id WHERE r.path LIKE '%$(basename "$src")'")
    local path
    path=$(q "SELECT path FROM file_datastore_records WHERE lower(hex(dataset_id)) = '$id'")
    [ -n "$path" ] && cmp -s "$src" "$T/repo/$path"
}
tool() { # tool NAME COMMAND...: run it on RAWS[n], check exit 0 and registration
    local name=$1
    shift
    if "$@" 2>"$T/err.txt"; then
        expect "$name: exits 0 and the raw is registered with its bytes" registered "$n"
    else
        fail "$name exited non-zero: $(head -c 300 "$T/err.txt")"
        tail -3 "$BFS_LOG"
    fi
    n=$((n + 1))
}
tool "cp" cp "${RAWS[0]}" "$R/a.fits"
tool "cp -p" cp -p "${RAWS[1]}" "$R/b.fits"
tool "install -m 0644" install -m 0644 "${RAWS[2]}" "$R/c.fits"
tool "dd bs=1M" dd if="${RAWS[3]}" of="$R/d.fits" bs=1M status=none
tool "cat >" bash -c "cat '${RAWS[4]}' >'$R/e.fits'"
(cd "$(dirname "${RAWS[5]}")" && tar cf "$T/f.tar" "$(basename "${RAWS[5]}")")
tool "tar x" tar xf "$T/f.tar" -C "$R"
expect "tar x of the same archive again exits 0 (it unlinks the ingested name, then writes it anew)" \
    tar xf "$T/f.tar" -C "$R"
expect "rm of an ingested raw's name in its RUN's directory removes only that name" \
    bash -c "rm '$R/$(basename "${RAWS[5]}")' && ! ls '$R' | grep -qx '$(basename "${RAWS[5]}")'"
expect "... its dataset stays" registered 5
if command -v rsync >/dev/null; then
    tool "rsync" rsync "${RAWS[6]}" "$R/g.fits"
else
    n=$((n + 1))
fi
tool "python open/write/close" python3 -c "
import sys
data = open(sys.argv[1], 'rb').read()
with open(sys.argv[2], 'wb') as f:
    for i in range(0, len(data), 65536):
        f.write(data[i:i + 65536])
" "${RAWS[7]}" "$R/h.fits"
tool "python, closing with os.fsync first" python3 -c "
import os, sys
data = open(sys.argv[1], 'rb').read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data); os.fsync(fd); os.close(fd)
" "${RAWS[8]}" "$R/i.fits"
if [ -x "${BFS_HDR2FITS:-}" ] && [ -r "$BFS_SHARED/fixtures/headers/lsstCam-MC_O_20250609_000578_R01_S01.yaml" ]; then
    expect "cfitsio fits_create_file writing straight into the mount" \
        "$BFS_HDR2FITS" "$BFS_SHARED/fixtures/headers/lsstCam-MC_O_20250609_000578_R01_S01.yaml" "$R/cfitsio.fits"
    expect "... registers that raw" test "$(q "SELECT count(*) FROM dataset_tags_00000001 WHERE exposure = 2025060900578 AND detector = 1")" = 1
fi
# the mount's owner when it is not root: the kernel checks the modes the
# mount shows (default_permissions) before a request reaches the daemon, a
# check root's CAP_DAC_OVERRIDE skips; setpriv drops it for one command
if command -v setpriv >/dev/null; then
    nocap() { setpriv --bounding-set -dac_override,-dac_read_search --inh-caps -dac_override,-dac_read_search "$@"; }
    touch_rm() { nocap touch "$1" && nocap rm "$1"; }
    expect "without root's override of modes: mkdir -p of a new RUN" nocap mkdir -p "$T/mnt/u/owner/run"
    expect "... touch and rm of a name in it" touch_rm "$T/mnt/u/owner/run/t.fits"
    tool "... cp into a RUN" nocap cp "${RAWS[9]}" "$R/k.fits"
    expect "... the same cp again (a duplicate)" nocap cp "${RAWS[9]}" "$R/k.fits"
    if command -v rsync >/dev/null; then
        tool "... rsync" nocap rsync "${RAWS[10]}" "$R/l.fits"
    fi
fi
# a bad file must be reported by each tool's exit status
head -c 5000 "${RAWS[9]}" >"$T/cut.fits"
mkdir -p "$T/bad" && cp "$T/cut.fits" "$T/bad/bad-tar.fits" && tar cf "$T/bad.tar" -C "$T/bad" bad-tar.fits
for t in "cp" "cp -p" "dd" "install" "tar x" "rsync"; do
    case $t in
        cp) cp "$T/cut.fits" "$R/bad-cp.fits" 2>/dev/null ;;
        "cp -p") cp -p "$T/cut.fits" "$R/bad-cpp.fits" 2>/dev/null ;;
        dd) dd if="$T/cut.fits" of="$R/bad-dd.fits" status=none 2>/dev/null ;;
        install) install "$T/cut.fits" "$R/bad-install.fits" 2>/dev/null ;;
        "tar x") tar xf "$T/bad.tar" -C "$R" 2>/dev/null ;;
        rsync) command -v rsync >/dev/null || continue
               rsync "$T/cut.fits" "$R/bad-rsync.fits" 2>/dev/null ;;
    esac
    rc=$?
    expect "$t of a truncated FITS exits non-zero" test "$rc" -ne 0
done
python3 -c "
import sys
try:
    with open(sys.argv[2], 'wb') as f:
        f.write(open(sys.argv[1], 'rb').read())
except OSError as e:
    sys.exit(3)
" "$T/cut.fits" "$R/bad-py.fits"
expect "python's close of a truncated FITS raises OSError" test $? = 3
if [ -x "${BFS_HDR2FITS:-}" ] && [ -r "$BFS_SHARED/fixtures/headers/lsstCam-MC_O_20250609_000578_R01_S01.yaml" ]; then
    # cfitsio writing a raw the ingest refuses (a camera it does not know):
    # the refusal reaches the program through cfitsio's close
    sed 's/^INSTRUME: .*/INSTRUME: NoSuchCam/' "$BFS_SHARED/fixtures/headers/lsstCam-MC_O_20250609_000578_R01_S01.yaml" >"$T/nosuch.yaml"
    "$BFS_HDR2FITS" "$T/nosuch.yaml" "$R/bad-cfitsio.fits" 2>/dev/null
    expect "cfitsio's fits_close_file of a raw of an unknown camera fails (hdr2fits exits non-zero)" test $? -ne 0
fi
expect "every refused file is in the quarantine" \
    test "$(find "$T/repo/.butlerfs/quarantine" -name '*.data' | wc -l)" -ge 6
unmount
check_log
expect_no_sanitizer
finish
