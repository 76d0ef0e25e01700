#!/usr/bin/env bash
# The last device call, for the ablations instead of the paper runs: assemble CIFAR-10 from the stashed parts (as
# run_paper.sh does), then train the ablation set (scripts/ablations.py: ResNet-20, 4,000 iterations, 12 runs) on
# the one GPU, JOBS trainers at a time, continuing the run directories committed under results/ablations/; stop
# them cleanly before the call's limit (--time-budget) and pack the set.
#
#   bash scripts/device/run_ablations.sh   # carry the last part (build/device/cifar10.partNofN) and build/device/manifest.json
#
# What comes back in $OUT:
#   ablations.tar.gz     ablations/: every variant's run directory as it now stands (finished runs without
#                        checkpoints/last.pt, which scripts/ablations.py deletes; unfinished ones with it)
#   run_ablations.log    this script's transcript: assembly and its checks, scripts/ablations.py's output
#   nvidia-smi.txt       the GPU at the start and at the end, utilisation every 20 s
# Then, here:
#   rm -rf results/ablations && tar -xzf FILES_AT/ablations.tar.gz -C results/ && python scripts/ablations.py report
#
# Env (defaults in brackets):
#   JOBS [12]            trainers at a time (each pinned to a core of its own, one CPU thread; they share the GPU)
#   BUDGET_S [560]       seconds this whole script may take; keep it under the call's timeout_s (590)
#   RESERVE_S [45]       seconds kept after the trainers' stop signal for their checkpoints, and for packing
#   ABLATION_FLAGS       more flags for `scripts/ablations.py run` (rehearsal: a tiny schedule, see README.md)
#   ASSEMBLE [1]         0: DATA_DIR already holds CIFAR-10 (a rehearsal on this CPU box)
#   STASH_DIR [/root/cifar-stash]; DATA_DIR [$STASH_DIR/data]; RUNS_DIR [$STASH_DIR/runs]
#   RESNET_CIFAR_CACHE [$STASH_DIR/cache]; PYTHON [python3]
set -uo pipefail

T0=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
mkdir -p "$OUT"

JOBS=${JOBS:-12}
BUDGET_S=${BUDGET_S:-560}
RESERVE_S=${RESERVE_S:-45}
ABLATION_FLAGS=${ABLATION_FLAGS:-}
ASSEMBLE=${ASSEMBLE:-1}
STASH_DIR=${STASH_DIR:-/root/cifar-stash}
DATA_DIR=${DATA_DIR:-$STASH_DIR/data}
RUNS_DIR=${RUNS_DIR:-$STASH_DIR/runs}
PY=${PYTHON:-python3}
export RESNET_CIFAR_CACHE=${RESNET_CIFAR_CACHE:-$STASH_DIR/cache}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

log() { echo "[run_ablations +$(( $(date +%s) - T0 ))s] $*"; }

gpu_snapshot() {  # $1: title
    echo "===== $1 ($(date -u +%Y-%m-%dT%H:%M:%SZ)) ====="
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi not available"; fi
}

main() {
    local gpu="none"
    if command -v nvidia-smi >/dev/null; then gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); fi
    log "start on $(hostname), gpu: $gpu; JOBS=$JOBS BUDGET_S=$BUDGET_S ABLATION_FLAGS='$ABLATION_FLAGS'"
    { echo "# gpu: $gpu"; gpu_snapshot "start"; } > "$OUT/nvidia-smi.txt" 2>&1

    if [[ $ASSEMBLE == 1 ]]; then
        log "assembling CIFAR-10 into $DATA_DIR"
        if ! "$PY" scripts/device/assemble.py --stash "$STASH_DIR" --out "$DATA_DIR"; then
            log "FAILED: the data could not be assembled (see above); nothing was trained"
            return 3
        fi
    fi

    # The carried set (tracked files, unfinished runs' last.pt included) is continued in a copy outside the
    # checkout, which the next call replaces.
    local runs="$RUNS_DIR/ablations"
    rm -rf "$runs" && mkdir -p "$RUNS_DIR"
    if [[ -d results/ablations ]]; then
        cp -a results/ablations "$runs" || { log "FAILED: cannot copy results/ablations"; return 4; }
    fi
    "$PY" scripts/ablations.py list --runs "$runs"

    local train_s=$(( BUDGET_S - ($(date +%s) - T0) - RESERVE_S ))
    if (( train_s < 60 )); then
        log "FAILED: only ${train_s}s would be left for training; raise BUDGET_S (and the call's timeout_s)"
        return 5
    fi
    local sampler_log="$RUNS_DIR/gpu-samples.csv"
    : > "$sampler_log"
    ( while sleep 20; do
          command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw \
              --format=csv,noheader >> "$sampler_log" 2>&1
      done ) >/dev/null 2>&1 &
    local sampler=$!
    log "training for at most ${train_s}s, $JOBS at a time"
    # --time-budget stops every trainer cleanly; the timeout is the safety net behind it (SIGTERM reaches the
    # trainers through ablations.py, which waits for their checkpoints).
    # shellcheck disable=SC2086  # a word list on purpose
    timeout -s TERM -k 25 "$(( train_s + RESERVE_S / 2 ))" "$PY" scripts/ablations.py run --runs "$runs" \
        --data-dir "$DATA_DIR" --jobs "$JOBS" --time-budget "$train_s" $ABLATION_FLAGS
    local status=$?
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    log "scripts/ablations.py run: exit status $status (0 all finished, 75 some resumable, else a failure)"
    { gpu_snapshot "end"; echo "===== every 20 s: timestamp, utilization.gpu, memory.used, power.draw ====="
      cat "$sampler_log"; } >> "$OUT/nvidia-smi.txt" 2>&1

    tar -C "$RUNS_DIR" -czf "$OUT/ablations.tar.gz" ablations
    log "packed $(du -h "$OUT/ablations.tar.gz" | cut -f1)"
    "$PY" scripts/ablations.py list --runs "$runs"
    return $status
}

main 2>&1 | tee "$OUT/run_ablations.log"
exit "${PIPESTATUS[0]}"
