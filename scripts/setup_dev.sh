#!/usr/bin/env bash
# Development set-up: the package with every extra the tests need, plus Debian's Chromium
# for the browser tests (Playwright drives it; no browser is downloaded) and npm, which
# fetches the onnxruntime-web tarball the web-export tests vendor.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
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
