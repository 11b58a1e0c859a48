#!/usr/bin/env bash
# The GPU kit's one device call: every GPU figure of issue 9 in one run, from the project root with .gpu/ beside it
# (scripts/gpu/make_kit.sh builds .gpu/ and copies this script into it).
#
#   device (run tool):  command 'bash .gpu/run_on_device.sh', carry ['.gpu'], timeout_s 560
#   dry run on a CPU:   DRY=1 OUT=/tmp/gpukit-dry bash .gpu/run_on_device.sh
#
# What it runs, each step under its own `timeout` and inside one time budget (BUDGET s, default 470: a step gets at
# most what is left, minus 20 s kept for the summary; a step that fails or is skipped does not stop the others):
#   env        wheels from .gpu/wheels installed to $SITE (no network there), versions, nvidia-smi
#   warm       warm_numba.py: numba's compiled kernels built once into $NUMBA_CACHE_DIR (dense flow with 8 and 32
#              tracks, a sparse matcher, the prototype loop), so later processes load them (the bench leaves frame 0
#              out of its figures, but a kernel first used at a new-area or re-segmentation frame, or on one
#              matcher kind's path, would compile inside a timed frame); each step's log line says whether the
#              cache grew during it
#   a          mastsam-bench --overhead, 8 and 32 tracks (the tracker alone on the device's CPU; no torch backend
#              is built in that mode, so --device does not matter there and is not passed)
#   b          vit_t + flow, random weights, 8 tracks, with comparison (a): automatic 32x32 per frame
#   c          vit_h fp16 + flow
#   d          vit_h fp16 + MASt3R on every frame (random published-architecture weights), with comparison (b):
#              the seed loop with upstream MASt3R forward + fast_reciprocal_NNs and SAM vit_h fp32
#   f          floors.py: the MASt3R matcher's own per-frame network time, synchronised (the bench's floor is SAM's
#              encoder + prompt decoder, measured in each bench run; its MASt3R runs beside the encoder)
#   e          vit_h fp16 + cadence matcher (MASt3R anchor every $CADENCE frames, flow between), sync and async
#   p          the stream preparing frames ahead (the node's default, node.pipeline) against the same stream with
#              nothing ahead (serial): scripts/bench_pipeline.py with vit_t on the device and a camera at $PRATE Hz,
#              fps and latency side by side (last: skipped when the budget is spent)
# then summary.py writes one line per configuration. $OUT receives 3 files: summary.txt, summary.json and
# logs.tar.gz (every step's log, exit status and JSON).
#
# DRY=1: the same steps on this CPU, tiny: --device cpu, 2-3 frames at 160x90, SAM's automatic grid 4x4, comparison
# (a) on a 2x2 grid, MASt3R's scaled-down test architecture (TINY_MODEL of scripts/verify_mast3r.py); DRY_SAM=vit_b
# replaces vit_h for quicker rehearsals. Its figures mean nothing; it checks that every step runs to the end.
set -u
ROOT=$(pwd)
K=$ROOT/.gpu
[ -d "$K/wheels" ] && [ -d "$K/frames" ] || { echo "no kit: run 'bash scripts/gpu/make_kit.sh MIRRORS' first" >&2; exit 2; }
OUT=${OUT:-/tmp/gpukit-out}
PY=${PY:-python3}
if [ "${DRY:-0}" = 1 ] && [ "$PY" = python3 ] && [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; fi
W=$(mktemp -d "${TMPDIR:-/tmp}/gpukit-work.XXXXXX")    # logs + JSON, tarred into $OUT at the end
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gpukit-scratch.XXXXXX")  # the random MASt3R checkpoint (GBs): never in $OUT
SITE=${SITE:-$SCRATCH/site}
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$SCRATCH/numba}
export PYTHONPATH=$SITE:$ROOT PYTHONUNBUFFERED=1
CADENCE=${CADENCE:-5}
mkdir -p "$OUT" "$NUMBA_CACHE_DIR"
if [ "${DRY:-0}" = 1 ]; then
  BUDGET=${BUDGET:-3600}; DEV=cpu; F=3; FH=2; SIZE="--size 160x90"; GRID="--set segmenter.points_per_side=4"
  AGRID=2; AF=1; PF=2; SAMH=${DRY_SAM:-vit_h}; ARCH=tiny; OVF=8; WARMF=36; FLF=2; CAPX=10; PSEC=20; PRATE=5
else
  BUDGET=${BUDGET:-470}; DEV=cuda; F=61; FH=61; SIZE=""; GRID=""
  AGRID=32; AF=3; PF=21; SAMH=vit_h; ARCH=published; OVF=61; WARMF=36; FLF=12; CAPX=1; PSEC=8; PRATE=60
fi
T0=$(date +%s)
stamp() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }
cached() { find "$NUMBA_CACHE_DIR" -name '*.nbc' 2>/dev/null | wc -l; }
finish() {
  stamp "=== summary"
  "$PY" "$K/summary.py" "$W" "$OUT/summary.txt" "$OUT/summary.json" || echo "summary failed (the logs are in logs.tar.gz)"
  tar -czf "$OUT/logs.tar.gz" -C "$W" . && rm -rf "$W" "$SCRATCH"
  stamp "done; \$OUT: $(ls "$OUT" | tr '\n' ' ')"
}
trap finish EXIT
# step NAME CAP CMD...: run CMD with its output in NAME.log, its exit status in NAME.rc; print the lines that matter
step() {
  local n=$1 cap=$(( $2 * CAPX )); shift 2  # CAPX: a CPU dry run's steps take far longer than the device's
  local left=$(( T0 + BUDGET - 20 - $(date +%s) ))
  if [ "$left" -lt 15 ]; then
    stamp "=== $n: skipped, ${left} s of the budget left"; echo "skipped: budget" > "$W/$n.rc"; return
  fi
  local t=$(( cap < left ? cap : left )) c0 rc
  c0=$(cached)
  stamp "=== $n (timeout ${t} s)"
  timeout -k 5 "$t" "$@" > "$W/$n.log" 2>&1
  rc=$?
  echo "$rc" > "$W/$n.rc"
  grep -E "^(mastsam-bench|model floor|end-to-end|\(a\)|\(b\)|memory|overhead_ms_median|MASt3R matcher|dense flow|sparse|prototype loop|MASt3R, random|tiny MASt3R|published MASt3R|pipeline / serial|WARNING|ERROR)|Error|error:" \
    "$W/$n.log" | grep -v "^WARNING: Location" | cut -c1-400 | tail -n 12
  [ "$rc" = 0 ] || tail -n 8 "$W/$n.log" | cut -c1-300
  stamp "--- $n: rc=$rc$([ "$rc" = 124 ] && echo ' (timed out)'); numba cache entries $c0 -> $(cached)"
}

stamp "=== env (DRY=${DRY:-0}, budget ${BUDGET} s, device $DEV, cadence N=$CADENCE)"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$K"/wheels/*.whl \
  2>&1 | grep -v "^WARNING: Location" || true
{
  "$PY" - <<'PY'
import importlib, os, platform, sys, warnings
warnings.simplefilter("ignore")  # timm's and mobile_sam's import-time notices
print("python", platform.python_version(), sys.executable, "| cores", os.cpu_count())
for m in ("torch", "numba", "llvmlite", "numpy", "cv2", "scipy", "skimage", "sklearn", "timm", "segment_anything",
          "mobile_sam", "roma"):
    try:
        mod = importlib.import_module(m)
        print(f"{m} {getattr(mod, '__version__', '(no __version__)')} {os.path.dirname(mod.__file__)}")
    except Exception as e:  # report every missing package, not only the first
        print(f"{m} MISSING: {e}")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
import mastsam_ros.core.tracker  # numba kernels are declared at import: fails here when numba cannot run
print("mastsam_ros imports from", os.path.dirname(mastsam_ros.__file__))
PY
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 || true
  git -C "$ROOT" log -1 --format='code at %h %s' 2>/dev/null || echo "code: no git here"
} 2>&1 | tee "$W/env.log"

B=("$PY" -m mastsam_ros.cli.bench --source "$K/frames" --quiet)
MODEL=(--random-weights --tracks 8 $SIZE $GRID --device "$DEV")
H=(--segmenter sam --model-type "$SAMH" --set segmenter.half_precision=true)
MCKPT=$SCRATCH/mast3r_random.pth
M3=(--set "matcher.checkpoint=$MCKPT" --set "matcher.mast3r_path=$K/mast3r")

step warm 120 "$PY" "$K/warm_numba.py" --source "$K/frames" --frames "$WARMF"
step overhead_8 60 "${B[@]}" --overhead --tracks 8 --frames "$OVF" --json "$W/overhead_8.json"
step overhead_32 60 "${B[@]}" --overhead --tracks 32 --frames "$OVF" --json "$W/overhead_32.json"
step vit_t_flow 120 "${B[@]}" --segmenter mobile_sam "${MODEL[@]}" --matcher flow --frames "$F" --compare a \
  --automatic-frames "$AF" --automatic-points-per-side "$AGRID" --json "$W/vit_t_flow.json"
step vit_h_fp16_flow 120 "${B[@]}" "${H[@]}" "${MODEL[@]}" --matcher flow --frames "$FH" --compare none \
  --json "$W/vit_h_fp16_flow.json"
if [ -d "$K/mast3r" ]; then
  step mast3r_checkpoint 120 "$PY" -c "
import sys, pathlib
sys.path.insert(0, 'scripts')
from verify_mast3r import TINY_MODEL, save_random_checkpoint
from mastsam_ros.core.matchers.mast3r import PUBLISHED_MODEL
spec = TINY_MODEL if sys.argv[2] == 'tiny' else PUBLISHED_MODEL
p = save_random_checkpoint(sys.argv[1], spec, pathlib.Path(sys.argv[3]))
print(sys.argv[2], 'MASt3R, random weights:', p, p.stat().st_size >> 20, 'MiB')
" "$K/mast3r" "$ARCH" "$MCKPT"
  step vit_h_fp16_mast3r 200 "${B[@]}" "${H[@]}" "${MODEL[@]}" --matcher mast3r "${M3[@]}" --frames "$FH" \
    --compare b --prototype-frames "$PF" --prototype-model-type "$SAMH" --json "$W/vit_h_fp16_mast3r.json"
  step floors 90 "$PY" "$K/floors.py" --checkpoint "$MCKPT" --mast3r-path "$K/mast3r" --device "$DEV" \
    --source "$K/frames" --frames "$FLF" $SIZE --json "$W/floors.json"
  for mode in sync async; do
    step "vit_h_fp16_mast3r_cadence_$mode" 120 "${B[@]}" "${H[@]}" "${MODEL[@]}" --matcher cadence "${M3[@]}" \
      --set matcher.anchor_backend=mast3r --set "matcher.anchor_interval=$CADENCE" --set "matcher.anchor_mode=$mode" \
      --frames "$FH" --compare none --json "$W/vit_h_fp16_mast3r_cadence_$mode.json"
  done
else
  stamp "no .gpu/mast3r (make_kit.sh ran without MIRRORS): MASt3R steps skipped"
fi
step node_pipeline_vit_t 90 "$PY" "$ROOT/scripts/bench_pipeline.py" --model vit_t --device "$DEV" --source "$K/frames" \
  --frames 50 --seconds "$PSEC" --repeats 1 --rate "$PRATE" $GRID --json "$W/node_pipeline_vit_t.json"
