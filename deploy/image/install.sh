#!/bin/sh
# Installs image-compat-extender into a new virtualenv: the runtime dependencies from the
# hash-pinned lock, then the project itself without dependencies.
#
# The Dockerfile runs exactly this, and so does tests/deploy/test_image.py (into a temporary
# virtualenv, then it starts `serve` from there), so the image's install steps are tested on
# machines that cannot build images.
#
# Usage: install.sh VENV [SOURCE_DIR]
set -eu
venv=${1:?usage: install.sh VENV [SOURCE_DIR]}
src=${2:-.}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
# Every runtime dependency is pinned by version and hash; anything unlisted makes pip fail.
"$venv/bin/python" -m pip install --quiet --no-cache-dir --require-hashes \
    -r "$src/requirements.lock"
# The project itself. Its build backend (setuptools) is used at build time only.
"$venv/bin/python" -m pip install --quiet --no-cache-dir --no-deps "$src"
# The lock must satisfy what pyproject.toml declares; a drift fails the build here.
"$venv/bin/python" -m pip check
"$venv/bin/image-compat-extender" --help >/dev/null
