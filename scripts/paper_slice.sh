#!/usr/bin/env bash
# Carry the paper's ResNet-32 runs of both backends forward by one slice on this machine's CPU, as under a
# cluster's wall-time limit: each trainer stops cleanly when BUDGET runs out (checkpoint saved, exit status 75)
# and the next call continues it from its run directory (--resume). Each run lives in
# results/runs/<backend>-resnet32-64k-seed<SEED>/, with the trainer's output appended to its train.log.
#
#   bash scripts/paper_slice.sh 2h20m                          # start both runs, or continue them
#   SEED=1 DATA_DIR=../shared/data/cifar10 bash scripts/paper_slice.sh 2h
#
# The protocol (He et al. 2015, Table 6): all 50,000 training images (--full-train), 64k iterations, batch 128,
# lr 0.1 -> 0.01 at 32k -> 0.001 at 48k, seed SEED, float32; test error and a resumable checkpoint every
# 1,000 iterations. On a machine with at least two cores the two trainers run side by side, each pinned to a
# core of its own with one thread: on the 2-core box that trained the pair 1.15x as fast as one after the
# other with two threads each (results/benchmark_placement.md). A finished run is left alone.
#
# Env: SEED [0], DATA_DIR [unset: the trainers' search, $CIFAR10_DIR, the cache], RUNS [results/runs],
#      BACKENDS ["torch_impl jax_impl"], PYTHON [.venv/bin/python if there is one, else python],
#      START_FLAGS [none]: flags added when a run starts, after the protocol's (the tests' tiny schedule).
# Exit status: 0 when every run finished, 75 when at least one stopped resumable and none failed, else 1.
set -uo pipefail

BUDGET=${1:?usage: scripts/paper_slice.sh BUDGET   (e.g. 2h20m, 90m, 5400)}
SEED=${SEED:-0}
RUNS=${RUNS:-results/runs}
BACKENDS=${BACKENDS:-torch_impl jax_impl}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
export PYTHONUNBUFFERED=1

cores=$(nproc)
core=0
pids=()
names=()
for backend in $BACKENDS; do
    run="$RUNS/$backend-resnet32-64k-seed$SEED"
    if [ -f "$run/final.json" ]; then
        echo "$run: finished; nothing to do"
        continue
    fi
    if [ -f "$run/config.json" ]; then
        flags=(--resume --run-dir "$run")            # the recipe comes from the run's config.json
    else
        flags=(--preset paper --depth 32 --iterations 64000 --full-train --seed "$SEED" --eval-every 1000
               --run-dir "$run")
        # shellcheck disable=SC2206  # a word list on purpose
        [ -n "${START_FLAGS:-}" ] && flags+=($START_FLAGS)
    fi
    [ -n "${DATA_DIR:-}" ] && flags+=(--data-dir "$DATA_DIR")
    pin=()
    if [ "$cores" -ge 2 ]; then
        pin=(taskset -c "$(( core % cores ))")
        core=$(( core + 1 ))
    fi
    mkdir -p "$run"
    echo "=== slice started $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): ${pin[*]} $PY -m $backend.train ${flags[*]} --time-budget $BUDGET" >> "$run/train.log"
    OMP_NUM_THREADS=$([ "$cores" -ge 2 ] && echo 1 || echo "$cores") \
        "${pin[@]}" "$PY" -m "$backend.train" "${flags[@]}" --time-budget "$BUDGET" --no-progress >> "$run/train.log" 2>&1 &
    pids+=($!)
    names+=("$run")
    echo "$run: pid $! (${pin[*]:-unpinned}), log $run/train.log"
done

# SIGINT/SIGTERM to this script reach the trainers, which save and exit; wait for them either way.
trap 'kill -TERM "${pids[@]}" 2>/dev/null' INT TERM
status=0
for i in "${!pids[@]}"; do
    while true; do
        wait "${pids[$i]}"; code=$?
        kill -0 "${pids[$i]}" 2>/dev/null || break   # a trapped signal interrupts wait; the trainer still saves
    done
    case $code in
        0) echo "${names[$i]}: finished" ;;
        75|130|143) echo "${names[$i]}: stopped, resumable (exit $code): $(tail -n 1 "${names[$i]}/train.log")"
                    [ "$status" -eq 0 ] && status=75 ;;
        *) echo "${names[$i]}: FAILED (exit $code); see ${names[$i]}/train.log"; status=1 ;;
    esac
done
exit $status
