# Shared set-up for scripts/run and scripts/test: install what is missing, start PostgreSQL.
# Sourced, not run. Every step is idempotent so a warm machine pays almost nothing.

set -euo pipefail

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

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
}

pg_version() {
    if command -v pg_lsclusters >/dev/null && [ -n "$(pg_lsclusters -h 2>/dev/null | head -n1)" ]; then
        pg_lsclusters -h | head -n1 | awk '{print $1}'
    else
        echo ""
    fi
}

# PostgreSQL with PostGIS for the running server version, started and reachable on 127.0.0.1.
ensure_postgis() {
    local ver
    ver=$(pg_version)
    if [ -z "$ver" ]; then
        apt_install postgresql postgresql-contrib
        ver=$(pg_version)
    fi
    apt_install "postgresql-$ver-postgis-3"
    if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
        log "starting PostgreSQL $ver"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
    fi
    for _ in $(seq 1 30); do
        pg_isready -h 127.0.0.1 -q && break
        sleep 1
    done
    pg_isready -h 127.0.0.1 -q || { echo "PostgreSQL is not accepting connections on 127.0.0.1" >&2; exit 1; }
    # Trust or password, whichever the machine has: the tests connect as postgres over TCP.
    if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
        log "allowing local TCP connections for the postgres role (trust, loopback only)"
        local hba
        hba=$($SUDO -u postgres psql -tAc 'show hba_file' 2>/dev/null || su postgres -c "psql -tAc 'show hba_file'")
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload || $SUDO pg_ctlcluster "$ver" main reload
    fi
}
