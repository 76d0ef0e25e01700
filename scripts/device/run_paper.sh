#!/usr/bin/env bash
# The last device call: assemble CIFAR-10 from the stashed parts, train BOTH backends with the paper's
# schedule (Table 6's protocol: all 50k training images, 64k iterations, test error every 1,000) at the same
# time on the one GPU, continuing the run directories committed under results/runs/ when there are any, stop
# them cleanly before the call's limit (--time-budget), and pack the runs.
#
#   bash scripts/device/run_paper.sh      # carry the last part (build/device/cifar10.partNofN) and build/device/manifest.json
#
# What comes back in $OUT (6 files, the tool returns at most 8):
#   <backend>-<RUN_TAG>.tar.gz (both backends)   the run directories (config.json, metrics.jsonl, final.json,
#                                                train.log, checkpoints/final.safetensors; also
#                                                checkpoints/last.* when the run did not finish, to resume)
#   torch_impl.log, jax_impl.log                 each trainer's output
#   run_paper.log                                this script's whole transcript (assembly included)
#   nvidia-smi.txt                               the GPU at the start, mid-run and at the end, utilisation samples
#
# Env (defaults in brackets):
#   ITERATIONS [64000]   total iterations; the lr milestones follow at 50% and 75% (paper: 32k, 48k of 64k)
#   BUDGET_S [560]       seconds this whole script may take; keep it under the call's timeout_s (590)
#   RESERVE_S [45]       seconds kept after the trainers' stop signal for their checkpoint, and for packing
#   KILL_AFTER_S [25]    a trainer still alive this long after SIGTERM is killed
#   TRAIN_S              seconds the trainers get (default: what BUDGET_S leaves after assembly and RESERVE_S)
#   EXTRA_FLAGS          more flags for both trainers (rehearsal: "--depth 8 --eval-every 10")
#   TORCH_FLAGS, JAX_FLAGS   flags for one trainer only
#   BACKENDS ["torch_impl jax_impl"]
#   SEED [0]; RUN_TAG [resnet32-64k-seed$SEED]: the runs are <backend>-$RUN_TAG
#   RUNS_FROM [results/runs]  where the checkout holds runs to continue: a <backend>-$RUN_TAG/ there with
#                        checkpoints/last.* is resumed (--resume: recipe from its config.json), one with
#                        final.json is left alone, a missing one starts fresh
#   STASH_DIR [/root/cifar-stash]; DATA_DIR [$STASH_DIR/data]; RUNS_DIR [$STASH_DIR/runs]
#   RESNET_CIFAR_CACHE [$STASH_DIR/cache]; PYTHON [python3]
#   XLA_PYTHON_CLIENT_MEM_FRACTION [0.45]  (XLA_PYTHON_CLIENT_PREALLOCATE is set to false: JAX and PyTorch share)
set -uo pipefail

T0=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
mkdir -p "$OUT"

ITERATIONS=${ITERATIONS:-64000}
BUDGET_S=${BUDGET_S:-560}
RESERVE_S=${RESERVE_S:-45}
KILL_AFTER_S=${KILL_AFTER_S:-25}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
TORCH_FLAGS=${TORCH_FLAGS:-}
JAX_FLAGS=${JAX_FLAGS:-}
BACKENDS=${BACKENDS:-torch_impl jax_impl}
SEED=${SEED:-0}
RUN_TAG=${RUN_TAG:-resnet32-64k-seed$SEED}
RUNS_FROM=${RUNS_FROM:-results/runs}
STASH_DIR=${STASH_DIR:-/root/cifar-stash}
DATA_DIR=${DATA_DIR:-$STASH_DIR/data}
RUNS_DIR=${RUNS_DIR:-$STASH_DIR/runs}
PY=${PYTHON:-python3}
export RESNET_CIFAR_CACHE=${RESNET_CIFAR_CACHE:-$STASH_DIR/cache}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}

log() { echo "[run_paper +$(( $(date +%s) - T0 ))s] $*"; }

flags_for() {
    case $1 in
        torch_impl) echo "$TORCH_FLAGS" ;;
        jax_impl) echo "$JAX_FLAGS" ;;
    esac
}

gpu_snapshot() {  # $1: title
    echo "===== $1 ($(date -u +%Y-%m-%dT%H:%M:%SZ)) ====="
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi not available"; fi
}

summarize() {  # $1: run dir
    "$PY" - "$1" <<'EOF'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
final = run / "final.json"
if final.is_file():
    print("  final.json:", json.dumps(json.loads(final.read_text()), sort_keys=True))
records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()] \
    if (run / "metrics.jsonl").is_file() else []
train = [r for r in records if r["kind"] == "train"]
evals = [r for r in records if r["kind"] == "eval"]
if train:
    print("  last train record:", json.dumps(train[-1]))
if evals:
    print("  last eval record: ", json.dumps(evals[-1]))
print("  checkpoints:", ", ".join(sorted(p.name for p in (run / "checkpoints").glob("*"))) or "none")
EOF
}

main() {
    log "start on $(hostname); ITERATIONS=$ITERATIONS BUDGET_S=$BUDGET_S RESERVE_S=$RESERVE_S backends: $BACKENDS"
    log "EXTRA_FLAGS='$EXTRA_FLAGS' TORCH_FLAGS='$TORCH_FLAGS' JAX_FLAGS='$JAX_FLAGS' RUNS_FROM='$RUNS_FROM' RUN_TAG='$RUN_TAG'"
    local gpu="none"
    if command -v nvidia-smi >/dev/null; then gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); fi
    { echo "# gpu: $gpu"; gpu_snapshot "start"; } > "$OUT/nvidia-smi.txt" 2>&1
    log "gpu: $gpu; python: $("$PY" -c 'import sys; print(sys.version.split()[0])')"
    mkdir -p "$RUNS_DIR"

    # ------------------------------------------------------------------ data
    log "assembling CIFAR-10 into $DATA_DIR"
    if ! "$PY" scripts/device/assemble.py --stash "$STASH_DIR" --out "$DATA_DIR"; then
        log "FAILED: the data could not be assembled (see above); nothing was trained"
        return 3
    fi

    # ------------------------------------------------------------------ run directories
    local b run carried
    declare -A start_flags=() skip=()
    for b in $BACKENDS; do
        run="$RUNS_DIR/$b-$RUN_TAG"
        carried="$RUNS_FROM/$b-$RUN_TAG"
        rm -rf "$run"
        if [[ -f "$carried/final.json" ]]; then
            skip[$b]=1; log "$b: $carried has finished already; not training it again"
        elif [[ -f "$carried/config.json" ]] && compgen -G "$carried/checkpoints/last.*" >/dev/null; then
            cp -a "$carried" "$run" || { log "FAILED: cannot copy $carried"; return 4; }
            start_flags[$b]="--resume"
            log "$b: continuing $carried from its checkpoint (step $("$PY" -c 'import json,sys; print(max(json.loads(l)["step"] for l in open(sys.argv[1]) if l.strip()))' "$run/metrics.jsonl" 2>/dev/null || echo "?"))"
        elif [[ -e "$carried" ]]; then
            log "FAILED: $carried holds no config.json and checkpoints/last.*; cannot continue it"; return 4
        else
            start_flags[$b]="--preset paper --depth 32 --iterations $ITERATIONS --full-train --eval-every 1000 --seed $SEED"
            log "$b: starting $b-$RUN_TAG"
        fi
    done

    # ------------------------------------------------------------------ training, both at once
    local train_s=$(( BUDGET_S - ($(date +%s) - T0) - RESERVE_S ))
    [[ -n "${TRAIN_S:-}" ]] && train_s=$TRAIN_S
    if (( train_s < 30 )); then
        log "FAILED: only ${train_s}s would be left for training; raise BUDGET_S (and the call's timeout_s)"
        return 5
    fi
    local sampler_log="$RUNS_DIR/gpu-samples.csv"
    : > "$sampler_log"
    if command -v nvidia-smi >/dev/null; then
        ( n=0; while sleep 20; do
              n=$((n + 1))
              nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,memory.total,power.draw \
                  --format=csv,noheader >> "$sampler_log" 2>&1
              (( n == 5 )) && gpu_snapshot "both trainers running" > "$RUNS_DIR/gpu-mid.txt" 2>&1
          done ) >/dev/null 2>&1 &
    else
        ( while sleep 3600; do :; done ) >/dev/null 2>&1 &
    fi
    local sampler=$!
    log "training for at most ${train_s}s (--time-budget; a trainer still running later gets SIGTERM, then SIGKILL)"
    local -a waits=()
    for b in $BACKENDS; do
        rm -f "$RUNS_DIR/$b.rc"
        [[ -n "${skip[$b]:-}" ]] && { echo 0 > "$RUNS_DIR/$b.rc"; continue; }
        run="$RUNS_DIR/$b-$RUN_TAG"
        # shellcheck disable=SC2086  # the flag variables are word lists on purpose
        set -- "$PY" -m "$b.train" ${start_flags[$b]} --data-dir "$DATA_DIR" --run-dir "$run" --no-progress \
            --time-budget "$train_s" $EXTRA_FLAGS $(flags_for "$b")
        {
            echo "\$ $*"
            # --time-budget stops the trainer cleanly; the timeout is the safety net behind it.
            timeout -s TERM -k "$KILL_AFTER_S" "$(( train_s + RESERVE_S / 2 ))" "$@" 2>&1
            echo $? > "$RUNS_DIR/$b.rc"
        } 2>&1 | tee -a "$OUT/$b.log" | sed -u "s/^/[$b] /" &
        waits+=($!)
        log "$b started: $*"
    done
    local pid
    for pid in "${waits[@]}"; do wait "$pid"; done
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    log "trainers done"
    {
        [[ -f "$RUNS_DIR/gpu-mid.txt" ]] && cat "$RUNS_DIR/gpu-mid.txt"
        gpu_snapshot "end"
        echo "===== samples every 20 s: timestamp, utilization.gpu, memory.used, memory.total, power.draw ====="
        cat "$sampler_log"
    } >> "$OUT/nvidia-smi.txt" 2>&1

    # ------------------------------------------------------------------ packing
    local status=0 rc finished
    for b in $BACKENDS; do
        [[ -n "${skip[$b]:-}" ]] && continue
        run="$RUNS_DIR/$b-$RUN_TAG"
        rc=$(cat "$RUNS_DIR/$b.rc" 2>/dev/null || echo "?")
        finished=no; [[ -f "$run/final.json" ]] && finished=yes
        case "$rc:$finished" in
            0:yes) log "$b: finished all its iterations" ;;
            75:no|124:no|143:no)
                if compgen -G "$run/checkpoints/last.*" >/dev/null; then
                    log "$b: stopped by the time limit (exit $rc); resumable checkpoint kept"
                else
                    log "$b: stopped by the time limit before its first checkpoint"; status=6
                fi ;;
            *) log "$b: FAILED (exit status $rc, final.json: $finished)"; status=6 ;;
        esac
        [[ -d "$run" ]] || { log "$b: no run directory"; status=6; continue; }
        { echo "===== slice on $gpu, $(date -u +%Y-%m-%dT%H:%M:%SZ), exit status $rc ====="; cat "$OUT/$b.log" 2>/dev/null; } >> "$run/train.log"
        cp "$OUT/nvidia-smi.txt" "$run/nvidia-smi-$(date -u +%Y%m%dT%H%M%SZ).txt" 2>/dev/null
        local -a exclude=()
        if [[ $finished == yes ]]; then
            exclude=(--exclude "$b-$RUN_TAG/checkpoints/last.*")
        fi
        tar -C "$RUNS_DIR" -czf "$OUT/$b-$RUN_TAG.tar.gz" "${exclude[@]}" "$b-$RUN_TAG"
        log "$b: packed $(du -h "$OUT/$b-$RUN_TAG.tar.gz" | cut -f1) ($( [[ $finished == yes ]] && echo "without" || echo "with") checkpoints/last.*)"
        summarize "$run"
    done
    log "files in \$OUT:"; ls -l "$OUT"
    log "done, exit status $status"
    return $status
}

main 2>&1 | tee "$OUT/run_paper.log"
exit "${PIPESTATUS[0]}"
