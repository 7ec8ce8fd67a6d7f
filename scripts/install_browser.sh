#!/usr/bin/env bash
# Install headless Chromium and its WebDriver from Debian's packages (`chromium`,
# `chromium-driver`) for the end-to-end test of `grn chat --web` (issue 8). Part of the README's
# test command, so CI installs them too. Idempotent; without root/sudo or apt-get it prints why
# and exits 0 (the browser test then skips with that reason).
#
#   bash scripts/install_browser.sh
set -u

log() { echo "[install_browser] $*"; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    log "present: /usr/bin/chromium, /usr/bin/chromedriver"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        log "SKIPPED: not root and no sudo (apt-get install chromium chromium-driver)"
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "SKIPPED: no apt-get (not a Debian/Ubuntu system); install Chromium and chromedriver by hand"
    exit 0
fi
if ! apt-cache show chromium-driver >/dev/null 2>&1; then
    $sudo apt-get update -qq || log "apt-get update failed"
fi
if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
    log "installed: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
else
    log "SKIPPED: apt-get install chromium chromium-driver failed"
fi
exit 0
