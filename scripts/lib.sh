# shellcheck shell=bash
# scripts/lib.sh - shared by scripts/test and scripts/demo.

# The Debian 12 packages butlerfs needs to build, test and run.
BFS_PACKAGES=(
    build-essential cmake pkg-config
    libfuse3-dev fuse3
    libsqlite3-dev sqlite3
    libcfitsio-dev libcfitsio-bin fitsverify
    libcmocka-dev libjansson-dev libyaml-dev libssl-dev
    libcurl4-openssl-dev liblmdb-dev libxxhash-dev libxml2-dev zlib1g-dev
    python3 rsync
    # fuzzing (tests/fuzz, build-fuzz/): clang and its libFuzzer runtime
    clang-14 libclang-rt-14-dev
    # test servers: nginx with WebDAV, PROPFIND and echo_sleep (stalls)
    nginx-light libnginx-mod-http-dav-ext libnginx-mod-http-echo openssl
    # PostgreSQL registries (issue 13): the server (btree_gist is in
    # postgresql-15 itself, no contrib package), PgBouncer and libpq; the
    # tests run them from tests/integration/pg.sh, never as system services
    postgresql pgbouncer libpq-dev
)

bfs_root_dir()
{
    cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}

# Install whatever is missing (checked with dpkg -s, so a prepared machine
# never touches apt).  apt-get update runs only when something is missing.
bfs_install_deps()
{
    local missing=() p sudo=()
    if ! command -v dpkg >/dev/null 2>&1; then
        echo "scripts: no dpkg here (not Debian?); install these yourself: ${BFS_PACKAGES[*]}" >&2
        return 0
    fi
    for p in "${BFS_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "scripts: all ${#BFS_PACKAGES[@]} packages are installed"
        return 0
    fi
    echo "scripts: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "scripts: missing packages (${missing[*]}) and not root, no sudo" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 update || return 1
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
}

# Node.js and npm (for the s3rver S3 test server) from Debian only when the
# machine has none: a node installed another way must not be replaced.
bfs_install_node()
{
    command -v npm >/dev/null 2>&1 && return 0
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends nodejs npm \
        || echo "scripts: could not install nodejs/npm; the S3 tests will be skipped" >&2
    return 0
}

# bfs_build DIR [cmake options...]: configure and build with -j2.
bfs_build()
{
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" && cmake --build "$dir" -j2
}

# ---- fuzzing (tests/fuzz): shared by scripts/fuzz and scripts/test ----------

# Every harness, in the order they run.
BFS_FUZZERS=(fuzz_config fuzz_butler_yaml fuzz_universe fuzz_names fuzz_http_head
             fuzz_s3_config fuzz_registry fuzz_translate fuzz_listing fuzz_sidecar)

# The clang that builds build-fuzz/ (clang, else clang-14), or nothing.
bfs_fuzz_cc()
{
    command -v clang 2>/dev/null || command -v clang-14 2>/dev/null
}

# bfs_fuzz_build: configure and build the harnesses in build-fuzz/.
bfs_fuzz_build()
{
    local cc
    cc=$(bfs_fuzz_cc) || { echo "scripts: no clang, cannot build the fuzzers" >&2; return 1; }
    CC=$cc cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBFS_FUZZ=ON \
        && cmake --build build-fuzz -j2 --target fuzzers
}

# bfs_fuzz_run NAME SECONDS JOBS: fuzz one harness from its seeds
# (tests/fuzz/corpus/NAME, read only) and what earlier runs found
# (build-fuzz/corpus/NAME, where new inputs go).  A crash, leak, timeout
# (10 s for one input) or out-of-memory leaves its input in
# build-fuzz/artifacts/ and fails.  Output: build-fuzz/logs/NAME.log.
bfs_fuzz_run()
{
    local name=$1 seconds=$2 jobs=$3 short=${1#fuzz_}
    local work=build-fuzz/corpus/$name log=build-fuzz/logs/$name.log
    local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                -artifact_prefix="build-fuzz/artifacts/$name-")
    mkdir -p "$work" build-fuzz/artifacts build-fuzz/logs
    [ -f "tests/fuzz/dict/$short.dict" ] && args+=(-dict="tests/fuzz/dict/$short.dict")
    [ "$jobs" -gt 1 ] && args+=(-fork="$jobs")
    local rc=0
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "build-fuzz/tests/fuzz/$name" "${args[@]}" "$work" "tests/fuzz/corpus/$name" \
        </dev/null >"$log" 2>&1 || rc=$?
    local stats
    stats=$(grep -E '^(stat::number_of_executed_units|#[0-9]+ +DONE|#[0-9]+: cov)' "$log" | tail -1)
    if [ $rc -ne 0 ]; then
        echo "FAILED $name (exit $rc): $(grep -m1 -E 'ERROR|SUMMARY|Test unit written' "$log")"
        echo "  log: $log; reproduce: build-fuzz/tests/fuzz/$name build-fuzz/artifacts/$name-*"
        return 1
    fi
    echo "ok     $name ${seconds}s ${stats:+($stats)}"
}
