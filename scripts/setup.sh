#!/bin/sh
# setup.sh - make a fresh Debian 12 machine ready for nepenc, build it and
# run the demo.  Idempotent: installs only what is missing, reconfigures
# only when needed.
#
#   scripts/setup.sh               install, build in ./build, run `make demo`
#   scripts/setup.sh --no-demo     install and build only
#
# NEPENC_CONFIGURE_FLAGS adds configure options (CI: --enable-werror).
# NEPENC_BUILD_DIR picks the build folder (default: build).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build=${NEPENC_BUILD_DIR:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
demo=yes
[ "${1:-}" = --no-demo ] && demo=no

# Build tools, libraries, and what the tests compare against.
packages="gcc make autoconf automake pkg-config
  libdnnl-dev libprotobuf-c-dev protobuf-c-compiler libxml2-dev libonnx-dev zlib1g-dev
  libpng-dev libdeflate-dev libjpeg62-turbo-dev python3-pil
  libxml2-utils python3 python3-onnx python3-numpy libonnx-testdata
  dataset-fashion-mnist librsvg2-bin groff-base python3-torch python3-torchvision libopenblas0-pthread
  clang libclang-rt-dev libomp-dev gdb
  openmpi-bin libopenmpi-dev"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
# Node.js may come from elsewhere (e.g. NodeSource's nodejs bundles npm and
# conflicts with Debian's npm package): what matters is the commands.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
	missing="$missing nodejs npm"
if [ -n "$missing" ]; then
	echo "setup: installing$missing"
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi

# The reference ONNX runtime for the tests (its CPU binary ships inside).
if [ ! -f "$top/node_modules/onnxruntime-node/package.json" ]; then
	echo "setup: installing onnxruntime-node (npm)"
	(cd "$top" && npm install --ignore-scripts --no-audit --no-fund --no-save \
		onnxruntime-node >/dev/null)
fi

cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi
mkdir -p "$build"
cd "$build"
flags=${NEPENC_CONFIGURE_FLAGS:-}
if [ ! -f Makefile ] || [ "$(cat .nepenc-flags 2>/dev/null)" != "$flags" ]; then
	# shellcheck disable=SC2086
	"$top/configure" $flags
	echo "$flags" > .nepenc-flags
fi
make -j"$(nproc)"
[ $demo = yes ] && make demo
exit 0
