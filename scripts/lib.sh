# Shared set-up for scripts/run and scripts/test: install what is missing, start PostgreSQL.
# Sourced, not run. Every step is idempotent so a warm machine pays almost nothing.

set -euo pipefail

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Runs a command as the postgres system user (peer authentication over the Unix socket).
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

apt_updated=0
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ $apt_updated = 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq
        apt_updated=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build and run-time packages: GDAL for import/export and ogrinfo, pkg-config and clang for
# -sys crates.
ensure_build_deps() {
    apt_install build-essential pkg-config libgdal-dev gdal-bin libsqlite3-dev clang libclang-dev
    if ! command -v cargo >/dev/null; then
        echo "cargo not found: this machine kind ships Rust through rustup" >&2
        exit 1
    fi
    # scripts/test checks formatting and lints.
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        rustup component add rustfmt clippy
    fi
}

# The big-screen page (web/): Node.js and npm to build it; Debian's Chromium and a CJK font for
# its browser test (tests/browser.rs) to render Chinese; DejaVu Sans, from which the server
# renders the map's label glyphs (/fonts/...).
ensure_web() {
    apt_install chromium fonts-noto-cjk fonts-dejavu-core
    if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
}

# `npm ci` when web/node_modules is missing or older than the lock file, then the bundle into
# web/dist (served at /map/).
build_web() {
    local web
    web="$(dirname "${BASH_SOURCE[0]}")/../web"
    if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
        log "npm ci (web)"
        (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    log "building the web page"
    (cd "$web" && npm run --silent build)
}

PSQL_ADMIN=(psql -w -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1)

# The major version of the server answering on 127.0.0.1:5432, or of the first local cluster.
pg_version() {
    local num
    num=$("${PSQL_ADMIN[@]}" -tAc 'show server_version_num' 2>/dev/null || true)
    if [ -n "$num" ]; then
        echo $((num / 10000))
    elif command -v pg_lsclusters >/dev/null && [ -n "$(pg_lsclusters -h 2>/dev/null | head -n1)" ]; then
        pg_lsclusters -h | head -n1 | awk '{print $1}'
    fi
}

start_clusters() {
    command -v pg_lsclusters >/dev/null || return 0
    pg_lsclusters -h | while read -r ver name _port status _rest; do
        if [ "$status" != online ]; then
            log "starting PostgreSQL $ver/$name"
            $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || $SUDO pg_ctlcluster "$ver" "$name" start
        fi
    done
}

# PostgreSQL with PostGIS for the running server version, started and reachable on 127.0.0.1.
ensure_postgis() {
    if [ -z "$(pg_version)" ]; then
        apt_install postgresql postgresql-contrib
    fi
    start_clusters
    for _ in $(seq 1 30); do
        pg_isready -h 127.0.0.1 -q && break
        sleep 1
    done
    pg_isready -h 127.0.0.1 -q || { echo "PostgreSQL is not accepting connections on 127.0.0.1" >&2; exit 1; }
    if ! "${PSQL_ADMIN[@]}" -tAc 'select 1' >/dev/null 2>&1; then
        # The tests connect as postgres over loopback TCP; a fresh Debian cluster asks for a
        # password there. Trust loopback only, and say so.
        log "allowing loopback TCP connections without a password in pg_hba.conf (127.0.0.1 and ::1 only)"
        local hba
        hba=$(as_postgres psql -tAc 'show hba_file')
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        as_postgres psql -tAc 'select pg_reload_conf()' >/dev/null
        sleep 1
    fi
    local ver
    ver=$(pg_version)
    apt_install "postgresql-$ver-postgis-3"
    local avail
    avail=$("${PSQL_ADMIN[@]}" -tAc "select count(*) from pg_available_extensions where name = 'postgis'")
    if [ "$avail" != 1 ]; then
        echo "PostGIS is not available to the PostgreSQL $ver server on 127.0.0.1" >&2
        exit 1
    fi
}

# Mosquitto, the MQTT broker: the MQTT tests start their own brokers from this binary on free
# ports (and restart them mid-test), leaving any broker already on 1883 alone.
ensure_mosquitto() {
    apt_install mosquitto
    export ONEMAP_TEST_MOSQUITTO="${ONEMAP_TEST_MOSQUITTO:-/usr/sbin/mosquitto}"
}

# HAProxy, the load balancer in front of the replicas of scripts/cluster (and tests/cluster.rs).
ensure_haproxy() {
    apt_install haproxy
    export ONEMAP_TEST_HAPROXY="${ONEMAP_TEST_HAPROXY:-/usr/sbin/haproxy}"
}

# A Python virtual environment under var/ holding the pinned packages of a requirements file,
# remade when the file changes. Prints nothing; the caller exports the path it needs.
ensure_venv() {
    local venv="$1" req="$2" what="$3"
    if [ -f "$venv/.installed" ] && cmp -s "$req" "$venv/.installed"; then return 0; fi
    command -v python3 >/dev/null || apt_install python3
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv python3-pip
    fi
    log "creating $what's Python environment ($venv)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.installed"
}

# The analysis peer (scripts/peer/analysis.py): PySAL (esda, libpysal), h3-py, pymannkendall,
# scipy and pyproj, which tests/analysis_peer.rs runs to compute the values onemap's statistics
# must match.
ensure_peer_venv() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    ensure_venv "$root/var/peer-venv" "$root/scripts/peer/requirements.txt" "the analysis peer"
    export ONEMAP_PEER_PYTHON="$root/var/peer-venv/bin/python"
}

# An S3-protocol server (moto's, from PyPI) that tests/media.rs keeps case photos in.
ensure_s3() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    ensure_venv "$root/var/s3-venv" "$root/scripts/s3/requirements.txt" "the S3 server"
    export ONEMAP_TEST_MOTO="$root/var/s3-venv/bin/moto_server"
}

# schemathesis, which tests/openapi.rs runs against the OpenAPI document at /api.
ensure_schemathesis() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    ensure_venv "$root/var/schema-venv" "$root/scripts/schemathesis/requirements.txt" "schemathesis"
    export ONEMAP_SCHEMATHESIS="$root/var/schema-venv/bin/schemathesis"
}
