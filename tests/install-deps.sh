#!/bin/sh
# Installs the Debian 12 packages that the build, the tests and the benchmarks
# need. Idempotent: packages already present are left alone.
set -eu
PKGS="build-essential pkg-config clang clang-format libclang-rt-14-dev
libwebsockets-dev liblua5.4-dev lua5.4 libseccomp-dev libcunit1-dev zlib1g-dev
libssl-dev openssl python3-websockets iproute2 valgrind lua-http lua5.1"
# Node.js and npm may come from elsewhere than Debian (a newer Node that
# bundles npm); Debian's npm package conflicts with that, so only ask for
# them when the commands are missing.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages:$missing" >&2
        echo "run as root:  apt-get update && apt-get install -y$missing" >&2
        echo "(or: sudo make deps)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
# Node's `ws` package, a test peer, goes into tests/peers/node_modules.
if [ ! -d "$(dirname "$0")/peers/node_modules/ws" ]; then
    (cd "$(dirname "$0")/peers" && npm install --no-audit --no-fund --silent ws@8) ||
        echo "warning: npm install ws failed; Node peer tests will be skipped" >&2
fi
echo "dependencies present"
