#!/usr/bin/env bash
# The Python package's tests as CI runs them (.ci/run): the library installed into a temporary prefix
# (make install), the package into a fresh virtual environment (pip install ./python numpy pytest),
# the library found through pkg-config as a user's would be, then pytest over tests/python/.
# Needs python3 with venv (python3-venv on Debian: bash .ci/install-docs-deps installs it) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s install PREFIX="$tmp/prefix"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check ./python numpy pytest
unset MAMBA2_LIBRARY
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
found=$("$tmp/venv/bin/python" -c 'import mamba2; print(mamba2.__file__, mamba2.library_path())')
echo "python package and library: $found"
case "$found" in
    "$tmp/venv/"*" $tmp/prefix/lib/"*) ;;
    *) echo "tests/python/run.sh: expected the installed package and the library of $tmp/prefix" >&2; exit 1 ;;
esac
"$tmp/venv/bin/python" -m pytest -q tests/python
