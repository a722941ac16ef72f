#!/usr/bin/env bash
# Install Debian's headless-capable Chromium, used by python_tests/test_demo.py to
# render the `a3ext demo` report and check the screenshot. Idempotent: does nothing
# when /usr/bin/chromium is already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_chromium.sh: need root (or password-less sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

# (sudo resets the environment: pass DEBIAN_FRONTEND through env)
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
