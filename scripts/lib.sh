# shellcheck shell=bash
# scripts/lib.sh - shared by scripts/test and scripts/demo.

# The Debian 12 packages butlerfs needs to build, test and run.
BFS_PACKAGES=(
    build-essential cmake pkg-config
    libfuse3-dev fuse3
    libsqlite3-dev sqlite3
    libcfitsio-dev libcfitsio-bin fitsverify
    libcmocka-dev libjansson-dev libyaml-dev libssl-dev
    libcurl4-openssl-dev liblmdb-dev libxxhash-dev
    python3
    # test servers: nginx with WebDAV, PROPFIND and echo_sleep (stalls)
    nginx-light libnginx-mod-http-dav-ext libnginx-mod-http-echo openssl
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
