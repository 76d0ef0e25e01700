#!/usr/bin/env bash
# Carry the paper's ResNet-DEPTH runs of both backends forward by one slice on this machine's CPU, as under a
# cluster's wall-time limit: each trainer stops cleanly when BUDGET runs out (checkpoint saved, exit status 75)
# and the next call continues it from its run directory (--resume). Each run lives in
# results/runs/<backend>-resnet<DEPTH>-64k-seed<SEED>/, with the trainer's output appended to its train.log.
#
#   bash scripts/paper_slice.sh 2h20m                          # start both ResNet-32 runs, or continue them
#   SEED=1 DATA_DIR=../shared/data/cifar10 bash scripts/paper_slice.sh 2h
#   DEPTH=110 bash scripts/paper_slice.sh 2h                   # the ResNet-110 runs, with the paper's lr warm-up
#
# The protocol (He et al. 2015, Table 6): ResNet-DEPTH, all 50,000 training images (--full-train), 64k
# iterations, batch 128, lr 0.1 -> 0.01 at 32k -> 0.001 at 48k, seed SEED, float32; test error and a resumable
# checkpoint every 1,000 iterations. On a machine with at least two cores the two trainers run side by side,
# each pinned to a core of its own with one thread: on the 2-core box that trained the pair 1.15x as fast as
# one after the other with two threads each (results/benchmarks.md, placement). When one run finishes and the
# other has more than TAKEOVER_MIN_S of the budget left, the other is stopped cleanly and continued at once with
# every core (alone with two threads, a trainer ran 1.5x (JAX) and 2x (PyTorch) as fast as pinned beside the
# other, in the same benchmark; the restart costs well under a minute).
# A finished run is left alone; a run whose partner has finished trains alone on every core.
# Needs bash >= 5.1 (wait -n -p) and, for the pinning, taskset.
#
# Env: SEED [0], DEPTH [32] (6n+2: the paper's 20, 32, 44, 56, 110), DATA_DIR [unset: the trainers' search,
#      $CIFAR10_DIR, the cache], RUNS [results/runs], BACKENDS ["torch_impl jax_impl"],
#      PYTHON [.venv/bin/python if there is one, else python],
#      START_FLAGS [none]: flags added when a run starts, after the protocol's (the tests' tiny schedule),
#      TAKEOVER_MIN_S [600].
# Exit status: 0 when every run finished, 75 when at least one stopped resumable and none failed, else 1.
set -uo pipefail

BUDGET=${1:?usage: scripts/paper_slice.sh BUDGET   (e.g. 2h20m, 90m, 5400)}
SEED=${SEED:-0}
DEPTH=${DEPTH:-32}
RUNS=${RUNS:-results/runs}
BACKENDS=${BACKENDS:-torch_impl jax_impl}
TAKEOVER_MIN_S=${TAKEOVER_MIN_S:-600}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
export PYTHONUNBUFFERED=1
budget_s=$("$PY" -c 'import sys; from cifar_core.cli import parse_duration; print(int(parse_duration(sys.argv[1])))' \
           "$BUDGET" 2>/dev/null) || { echo "error: BUDGET $BUDGET is not a duration: write e.g. 2h20m, 90m or 5400" >&2; exit 2; }
cores=$(nproc)

declare -A running=()   # pid -> backend
stopping=
status=0

run_dir() { echo "$RUNS/$1-resnet$DEPTH-64k-seed$SEED"; }

# start BACKEND CORE|all SECONDS: start the backend's run or continue it, pinned to CORE with one thread, or on
# every core; its output goes to the run's train.log.
start() {
    local backend=$1 where=$2 seconds=$3 run flags pin threads
    run=$(run_dir "$backend")
    if [ -f "$run/config.json" ]; then
        flags=(--resume --run-dir "$run")            # the recipe comes from the run's config.json
    else
        flags=(--preset paper --depth "$DEPTH" --iterations 64000 --full-train --seed "$SEED" --eval-every 1000
               --run-dir "$run")
        # shellcheck disable=SC2206  # a word list on purpose
        [ -n "${START_FLAGS:-}" ] && flags+=($START_FLAGS)
    fi
    [ -n "${DATA_DIR:-}" ] && flags+=(--data-dir "$DATA_DIR")
    if [ "$where" = all ]; then pin=(); threads=$cores; else pin=(taskset -c "$where"); threads=1; fi
    mkdir -p "$run"
    echo "=== slice started $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): ${pin[*]} $PY -m $backend.train ${flags[*]} --time-budget $seconds" >> "$run/train.log"
    OMP_NUM_THREADS=$threads "${pin[@]}" "$PY" -m "$backend.train" "${flags[@]}" --time-budget "$seconds" \
        --no-progress >> "$run/train.log" 2>&1 &
    running[$!]=$backend
    echo "$run: pid $! (${pin[*]:-on all $cores cores}), log $run/train.log"
}

# wait_for PID: its exit status, once it has exited (a trapped signal interrupts wait; the trainer still saves).
wait_for() {
    local code
    while true; do
        wait "$1"; code=$?
        kill -0 "$1" 2>/dev/null || return "$code"
    done
}

report() {  # report BACKEND CODE
    local run
    run=$(run_dir "$1")
    case $2 in
        0) echo "$run: finished" ;;
        75|130|143) echo "$run: stopped, resumable (exit $2): $(tail -n 1 "$run/train.log")"
                    [ "$status" -eq 0 ] && status=75 ;;
        *) echo "$run: FAILED (exit $2); see $run/train.log"; status=1 ;;
    esac
}

pending=()
for backend in $BACKENDS; do
    if [ -f "$(run_dir "$backend")/final.json" ]; then
        echo "$(run_dir "$backend"): finished; nothing to do"
    else
        pending+=("$backend")
    fi
done
core=0
for backend in "${pending[@]}"; do
    if [ "$cores" -ge 2 ] && [ "${#pending[@]}" -ge 2 ]; then   # a run left alone gets every core
        start "$backend" $(( core % cores )) "$BUDGET"
        core=$(( core + 1 ))
    else
        start "$backend" all "$BUDGET"
    fi
done

# SIGINT/SIGTERM to this script reach the trainers, which save and exit; wait for them either way.
trap 'stopping=1; kill -TERM "${!running[@]}" 2>/dev/null' INT TERM
while [ "${#running[@]}" -gt 0 ]; do
    pid=
    wait -n -p pid "${!running[@]}"; code=$?
    [ -n "${pid:-}" ] || continue                   # a trapped signal interrupted wait (and unset pid)
    backend=${running[$pid]}
    unset "running[$pid]"
    report "$backend" "$code"
    left=$(( budget_s - SECONDS ))
    if [ "$code" -eq 0 ] && [ -z "$stopping" ] && [ "$cores" -ge 2 ] && [ "${#running[@]}" -eq 1 ] \
            && [ "$left" -gt "$TAKEOVER_MIN_S" ]; then
        other_pid=${!running[*]}
        other=${running[$other_pid]}
        echo "$(run_dir "$other"): stopping it to continue on all $cores cores ($left s of the budget left)"
        kill -TERM "$other_pid"
        wait_for "$other_pid"; code=$?
        unset "running[$other_pid]"
        if [ -z "$stopping" ] && { [ "$code" -eq 143 ] || [ "$code" -eq 75 ]; }; then
            start "$other" all $(( budget_s - SECONDS ))
        else
            report "$other" "$code"                      # it finished, failed, or this script is being stopped
        fi
    fi
done
exit $status
