#!/usr/bin/env bash
# Development set-up: the package with every extra the tests need, plus Debian's Chromium
# for the browser tests (Playwright drives it; no browser is downloaded) and npm, which
# fetches the onnxruntime-web tarball the web-export tests vendor. LiteRT's converter pins
# packages this environment needs newer (setup.py, extra litert): it gets .venv-litert, a venv
# on top of this environment's packages (torch, numpy, ... are used from here, untouched) where
# pip adds litert-torch and its own older pins; the LiteRT tests convert there.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# About a minute. pip then lists packages of this environment that want the newer pins: only
# the venv's view of them is older, this environment keeps its own.
[ -x .venv-litert/bin/python ] || python -m venv --system-site-packages .venv-litert
.venv-litert/bin/python -m pip install -q -e ".[litert]"
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
ORT_WEB=$(python -c "from animegan2.webexport import ORT_WEB_VERSION as v; print(v)")
if [ ! -f ".cache/onnxruntime-web-$ORT_WEB.tgz" ]; then
    mkdir -p .cache
    npm pack "onnxruntime-web@$ORT_WEB" --pack-destination .cache --silent >/dev/null
fi
