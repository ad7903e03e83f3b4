#!/usr/bin/env bash
# test_fixture_repos.sh - mount every real repository in
# $BFS_SHARED/fixtures/repos and compare the mount with the oracle
# (expected_paths.py, which reads the registry on its own, per docs/paths.md):
#   - every expected path exists (looked up path by path, before any listing)
#     with the expected st_size;
#   - the listing (find -type f) holds exactly the expected paths, no more;
#   - every file whose datastore file exists reads back byte-identical;
#   - a file whose datastore file is missing fails to open with EIO and the
#     daemon logs exactly one warning line naming the missing path;
#   - lsstCam: alternate keys (obs_id, detector full_name) and dimensions in
#     non-universe order resolve;
#   - the daemon log shows no error and no sanitizer report.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

skip_unless_fuse
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
repos_dir=$BFS_SHARED/fixtures/repos
[ -d "$repos_dir" ] || skip "no fixture repositories at $repos_dir"

MAX_REPORT=15   # failures printed per check; the rest are only counted

# report CHECK NBAD NTOTAL: one pass/fail line per check
report()
{
    if [ "$2" -eq 0 ]; then
        pass "$1 ($3 checked)"
    else
        fail "$1: $2 of $3 wrong"
    fi
}

check_paths_and_sizes()   # MNT EXPECTED
{
    local mnt=$1 exp=$2 rel loc size exists st bad=0 n=0
    while IFS=$'\t' read -r rel loc size _ exists; do
        n=$((n + 1))
        if ! st=$(stat -c '%F %s' -- "$mnt/$rel" 2>&1); then
            bad=$((bad + 1))
            [ $bad -le $MAX_REPORT ] && echo "  missing: $rel ($st)" >&2
        elif [ "${st% *}" != "regular file" ] && [ "${st% *}" != "regular empty file" ]; then
            bad=$((bad + 1))
            [ $bad -le $MAX_REPORT ] && echo "  not a regular file: $rel (${st% *})" >&2
        elif [ "$size" != "?" ] && [ "${st##* }" != "$size" ]; then
            bad=$((bad + 1))
            [ $bad -le $MAX_REPORT ] && echo "  size of $rel: expected $size, got ${st##* }" >&2
        fi
    done <"$exp"
    report "$name: every expected path exists with the expected size" $bad $n
}

check_listing()   # MNT EXPECTED
{
    local mnt=$1 exp=$2 want got nwant ngot
    want=$BFS_TMP/$name.want
    got=$BFS_TMP/$name.got
    cut -f1 "$exp" | LC_ALL=C sort >"$want"
    (cd "$mnt" && find . -type f -printf '%P\n') | LC_ALL=C sort >"$got"
    nwant=$(wc -l <"$want")
    ngot=$(find "$mnt" -type f | wc -l)
    if [ "$nwant" -eq "$ngot" ]; then
        pass "$name: find lists $ngot files, as expected"
    else
        fail "$name: find lists $ngot files, expected $nwant"
    fi
    if cmp -s "$want" "$got"; then
        pass "$name: the listed paths are exactly the expected ones"
    else
        fail "$name: listed paths differ from the expected ones (< expected only, > listed only):"
        diff "$want" "$got" | grep '^[<>]' | head -n $MAX_REPORT >&2
    fi
}

check_contents()   # MNT EXPECTED
{
    local mnt=$1 exp=$2 rel loc exists bad=0 n=0
    while IFS=$'\t' read -r rel loc _ _ exists; do
        [ "$exists" = 1 ] || continue
        n=$((n + 1))
        # through a pipe: cmp alone would compare st_size (the registry's
        # file_size, which may differ from the bytes on disk) without reading
        if ! cat -- "$mnt/$rel" 2>/dev/null | cmp -s - "$loc"; then
            bad=$((bad + 1))
            [ $bad -le $MAX_REPORT ] && echo "  content of $rel differs from $loc" >&2
        fi
    done <"$exp"
    report "$name: files read back byte-identical to their datastore files" $bad $n
}

check_missing()   # MNT EXPECTED
{
    local mnt=$1 exp=$2 rel loc exists bad=0 n=0 before err new
    while IFS=$'\t' read -r rel loc _ _ exists; do
        [ "$exists" = 0 ] || continue
        case $loc in *://*) continue ;; esac
        n=$((n + 1))
        before=$(wc -l <"$BFS_LOG")
        if err=$(cat -- "$mnt/$rel" 2>&1 >/dev/null); then
            bad=$((bad + 1))
            [ $bad -le $MAX_REPORT ] && echo "  $rel: opened although $loc is missing" >&2
            continue
        fi
        if [[ $err != *"Input/output error"* ]]; then
            bad=$((bad + 1))
            [ $bad -le $MAX_REPORT ] && echo "  $rel: expected EIO, got: $err" >&2
            continue
        fi
        new=$(tail -n +"$((before + 1))" "$BFS_LOG")
        if [ "$(printf '%s\n' "$new" | grep -c .)" -ne 1 ] ||
            ! printf '%s\n' "$new" | grep -Eq '^[^ ]+ butlerfs\[[0-9]+\] warning ' ||
            ! printf '%s\n' "$new" | grep -qF -- "$loc"; then
            bad=$((bad + 1))
            [ $bad -le $MAX_REPORT ] &&
                printf '  %s: expected one warning line naming %s, the log got:\n%s\n' "$rel" "$loc" "$new" >&2
        fi
    done <"$exp"
    [ $n -gt 0 ] && report "$name: missing datastore files fail with EIO and log one warning each" $bad $n
}

check_lsstcam_aliases()   # MNT EXPECTED
{
    local mnt=$1 exp=$2 d file loc listing
    d=$mnt/LSSTCam/raw/all/raw/instrument=LSSTCam
    file=raw_LSSTCam_29_3019031900001.fits
    loc=$(awk -F'\t' -v p="LSSTCam/raw/all/raw/instrument=LSSTCam/detector=29/exposure=3019031900001/$file" \
        '$1 == p { print $2 }' "$exp")
    if [ -z "$loc" ]; then
        fail "lsstCam: the oracle has no raw for detector 29, exposure 3019031900001"
        return
    fi
    expect "lsstCam: exposure=MC_C_20190319_000001 (obs_id) resolves" test -d "$d/exposure=MC_C_20190319_000001"
    listing=$(ls "$d/exposure=MC_C_20190319_000001" 2>&1 | tr '\n' ' ')
    expect "lsstCam: exposure=<obs_id> lists the next dimension in universe order (got: $listing)" \
        test "$listing" = "detector=29 detector=97 "
    expect "lsstCam: detector=R10_S02 (full_name) resolves" test -d "$d/detector=R10_S02"
    listing=$(ls "$d/detector=R10_S02" 2>&1 | tr '\n' ' ')
    expect "lsstCam: detector=R10_S02 lists exposure=3019031900001 (got: $listing)" \
        test "$listing" = "exposure=3019031900001 "
    expect "lsstCam: both aliases together read the raw" \
        cmp -s "$d/detector=R10_S02/exposure=MC_C_20190319_000001/$file" "$loc"
    listing=$(ls "$d/exposure=3019031900001/detector=29/" 2>&1 | tr '\n' ' ')
    expect "lsstCam: exposure=…/detector=29 (non-universe order) lists $file (got: $listing)" \
        test "$listing" = "$file "
    expect "lsstCam: the file read through the non-universe order is the raw" \
        cmp -s "$d/exposure=3019031900001/detector=29/$file" "$loc"
    listing=$(ls "$d" 2>&1 | tr '\n' ' ')
    expect "lsstCam: aliases are not listed (got: $listing)" test "$listing" = "detector=29 detector=35 detector=97 "
    expect "lsstCam: an unknown alias does not resolve" test ! -e "$d/detector=R99_S99"
    expect "lsstCam: an unknown obs_id does not resolve" test ! -e "$d/exposure=MC_C_20190319_999999"
}

nrepos=0
for repo in "$repos_dir"/*/; do
    repo=${repo%/}
    if [ ! -f "$repo/gen3.sqlite3" ] || [ ! -f "$repo/butler.yaml" ]; then continue; fi
    name=$(basename "$repo")
    nrepos=$((nrepos + 1))
    exp=$BFS_TMP/$name.tsv
    if ! python3 "$here/expected_paths.py" "$repo" >"$exp"; then
        fail "$name: expected_paths.py failed"
        continue
    fi
    if [ ! -s "$exp" ]; then
        fail "$name: the oracle expects no files at all"
        continue
    fi
    mnt=$BFS_TMP/mnt-$name
    mkdir -p "$mnt"
    mount_repo "$repo" "$mnt" || continue
    check_paths_and_sizes "$mnt" "$exp"   # before any listing or read: fresh lookups, registry sizes
    check_listing "$mnt" "$exp"
    check_contents "$mnt" "$exp"
    check_missing "$mnt" "$exp"
    [ "$name" = lsstCam ] && check_lsstcam_aliases "$mnt" "$exp"
    unmount "$mnt"
    check_log
done
[ $nrepos -gt 0 ] || skip "no repositories in $repos_dir"
finish
