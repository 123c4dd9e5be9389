#!/usr/bin/env bash
# GPU checks for a lent H100/H200-class machine: one prepared run of at most 10 minutes.
#
#   bash benchmarks/gpu.sh [--out DIR] [--dry-run]
#
# Figures (benchmarks/gpu_figures.py, one step each, each under its own time limit so one slow step
# cannot eat the others' time):
#   teacher   mformer 16x224^2 bf16 clips/s at batch 16 and 32, from preprocessed input      (<= 75 s)
#   latency   teacher and EgoDistill N=1 latency per clip at batch 32 (paper Table 3, A40)   (<= 75 s)
#   extract   the teacher's busy fraction during a real `egocache extract` of synthetic
#             1080p video (egocache synth), decode threads, one dask worker per GPU          (<= 170 s)
#   loader    train-student steps/s at 224 px, N=1 and N=4, DataLoader vs in-memory         (<= 120 s)
#   ddp       train-student under torchrun with nccl on every GPU present                    (<= 90 s,
#             plus 40 s to write its cache and 15 s to read its log)
# The limits add up to 585 s, so the whole script ends within 10 minutes (nvidia-smi and the report
# take seconds). Then DIR/gpu-figures.json and DIR/gpu-figures.md (the table for docs/benchmarks.md); DIR/gpu.log
# holds every step's output. A step that fails or runs out of time is named in both files.
#
# --dry-run runs every step on the CPU with stand-ins (mformer-tiny, small frames, a few steps, gloo),
# so the script is tested (tests/test_benchmarks_gpu.py) on machines without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=gpu-figures
DRY=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --dry-run) DRY=(--dry-run); shift ;;
        *) echo "gpu.sh: unknown argument $1 (use --out DIR, --dry-run)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
: > "$LOG"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
FIG=(python benchmarks/gpu_figures.py)

SCALE=1    # --dry-run: CPU stand-ins on a shared CPU get three times each step's limit
step() {   # step NAME SECONDS COMMAND...: run with a time limit, log it, never stop the script
    local name="$1" limit=$(($2 * SCALE)); shift 2
    echo "== $name (limit ${limit} s): $*" >> "$LOG"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s" >> "$LOG"
    [ $rc -eq 0 ] || echo "gpu.sh: step $name failed (exit $rc); see $LOG" >&2
    return 0
}

if [ ${#DRY[@]} -eq 0 ]; then
    NPROC=$(python -c "import torch; print(torch.cuda.device_count())")
    [ "$NPROC" -ge 1 ] || { echo "gpu.sh: no CUDA device; use --dry-run" >&2; exit 1; }
    nvidia-smi >> "$LOG" 2>&1
    DDP_ARGS=(--device cuda --batch-size 256 --epochs 2 --num-workers 8)
else
    NPROC=2
    DDP_ARGS=(--device cpu --batch-size 8 --epochs 1 --num-workers 0)
    SCALE=3
    export OMP_NUM_THREADS=1
fi

step teacher 75 "${FIG[@]}" teacher --out "$OUT" "${DRY[@]}"
step latency 75 "${FIG[@]}" latency --out "$OUT" "${DRY[@]}"
step extract 170 "${FIG[@]}" extract --out "$OUT" "${DRY[@]}"
step loader 120 "${FIG[@]}" loader --out "$OUT" "${DRY[@]}"
step ddp-cache 40 "${FIG[@]}" ddp-cache --out "$OUT" "${DRY[@]}"
T0=$SECONDS
step ddp-train 90 python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m egocache train-student \
    --cache "$OUT/work/ddp.zarr" --out "$OUT/work/ddp-run" --variant egodistill --frames 1 --stage distill \
    --no-progress "${DDP_ARGS[@]}"
step ddp 15 "${FIG[@]}" ddp --out "$OUT" --log "$LOG" --nproc "$NPROC" --seconds $((SECONDS - T0)) "${DRY[@]}"
"${FIG[@]}" report --out "$OUT" "${DRY[@]}" 2>> "$LOG"
echo "gpu.sh: figures in $OUT/gpu-figures.json and $OUT/gpu-figures.md ($SECONDS s)"
