#!/usr/bin/env bash
# Build .gpu/ (git-ignored) in this checkout: what one device call needs that the GPU machine lacks, and the scripts
# that run there. usage, from anywhere in the checkout:  bash scripts/gpu/make_kit.sh [MIRRORS]
#
# MIRRORS: a folder holding git mirrors of naver/mast3r, naver/dust3r and naver/croco as <owner>+<name>/repo (here:
# /work/.mirror); without it the MASt3R steps are left out of the run. The device image has torch, torchvision, timm,
# numba, OpenCV, SciPy, scikit-image, scikit-learn, PyYAML, tqdm, einops, huggingface_hub; it lacks segment-anything,
# mobilesam-mirror and roma (carried here as wheels, at the pins of requirements.txt), the MASt3R code and ../shared
# (the frames: DAVIS car-roundabout, used for the benchmark only, never committed).
# Then:  device call  command 'bash .gpu/run_on_device.sh', carry ['.gpu'], timeout_s 560
#        dry run here DRY=1 OUT=/tmp/gpukit-dry bash .gpu/run_on_device.sh
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
HERE=scripts/gpu
K=.gpu
SHARED=${SHARED:-../shared}
SEQ=${SEQ:-car-roundabout}
PY=${PYTHON:-python3}
"$PY" -m pip --version > /dev/null 2>&1 || PY=.venv/bin/python  # pip only downloads here; any python with pip
rm -rf "$K"
mkdir -p "$K/wheels" "$K/frames"
EXCLUDE=$(git rev-parse --git-path info/exclude)  # in a worktree .git is a file; this is the shared exclude file
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '/.gpu/' "$EXCLUDE" 2>/dev/null || echo '/.gpu/' >> "$EXCLUDE"

mapfile -t PINS < <(grep -E '^(segment-anything|mobilesam-mirror|roma)==' requirements.txt)
[ "${#PINS[@]}" = 3 ] || { echo "requirements.txt must pin segment-anything, mobilesam-mirror and roma" >&2; exit 1; }
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$K/wheels" "${PINS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
[ "$(ls "$K"/wheels/*.whl | wc -l)" = 3 ] || { echo "expected 3 wheels in $K/wheels" >&2; exit 1; }

FRAMES=$SHARED/data/davis2016/JPEGImages/480p/$SEQ
[ -d "$FRAMES" ] || { echo "no frames at $FRAMES (set SHARED)" >&2; exit 1; }
cp "$FRAMES"/*.jpg "$K/frames/"

if [ -n "${1:-}" ]; then
  M=$1
  mkdir -p "$K/mast3r/dust3r/croco"
  # only what the model, fast_nn and RoPE import: the packages, not the demos, datasets or assets
  git --git-dir="$M/naver+mast3r/repo" archive HEAD mast3r | tar -x -C "$K/mast3r"
  git --git-dir="$M/naver+dust3r/repo" archive HEAD dust3r | tar -x -C "$K/mast3r/dust3r"
  git --git-dir="$M/naver+croco/repo" archive HEAD models utils | tar -x -C "$K/mast3r/dust3r/croco"
  for r in mast3r dust3r croco; do
    echo "naver/$r $(git --git-dir="$M/naver+$r/repo" rev-parse HEAD)"
  done > "$K/mast3r/REVISIONS"
fi
cp "$HERE/run_on_device.sh" "$HERE/warm_numba.py" "$HERE/floors.py" "$HERE/summary.py" "$K/"
echo "kit: $(du -sh "$K" | cut -f1) in $K ($(ls "$K/frames" | wc -l) frames; wheels: $(ls "$K/wheels" | tr '\n' ' '))"
[ -d "$K/mast3r" ] && echo "MASt3R code: $(tr '\n' ';' < "$K/mast3r/REVISIONS")"
echo "device call: command 'bash .gpu/run_on_device.sh', carry ['.gpu'], timeout_s 560"
