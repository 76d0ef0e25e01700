#!/usr/bin/env bash
# Break one convention at a time in a scratch copy of the tracked files and run the parity checks that
# should catch it; each block below must end in FAILED lines. Run from the virtual environment:
#     bash scripts/mutation_check.sh
set -u
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
SRC=$(cd "$(dirname "$0")/.." && pwd)
# run inside the project's virtual environment
export CIFAR10_DIR=${CIFAR10_DIR:-$SRC/../shared/data/cifar10}
TESTS="parity_tests/test_init_stats.py parity_tests/test_function.py parity_tests/test_training.py::test_weights_after_early_steps_float64 parity_tests/test_training.py::test_lockstep_every_step_float64"
run() {
  name=$1; file=$2; from=$3; to=$4
  rm -rf "$SCRATCH"/*  && (cd $SRC && git ls-files | tar -cf - -T - | tar -xf - -C $SCRATCH)
  python - "$file" "$from" "$to" "$SCRATCH" <<'PY'
import sys; p, a, b, root = sys.argv[1:5]; p = root + "/" + p; s = open(p).read(); assert a in s, a; open(p, "w").write(s.replace(a, b))
PY
  echo "=== $name: $file: '$from' -> '$to'"
  (cd $SCRATCH && python -m pytest -q -p no:cacheprovider $TESTS 2>&1 | grep -E "^(FAILED|ERROR)|passed|failed" )
}
run "SAME padding in JAX" jax_impl/model.py 'padding=((1, 1), (1, 1))' 'padding="SAME"'
run "BN momentum 0.99 in JAX" jax_impl/model.py 'BN_MOMENTUM = 0.9 ' 'BN_MOMENTUM = 0.99 '
run "He init fan_in in JAX" jax_impl/model.py '"fan_out", "normal"' '"fan_in", "normal"'
run "weight decay after momentum in JAX" jax_impl/train.py 'optax.chain(optax.add_decayed_weights(recipe.weight_decay),
                       optax.sgd(lr_schedule(recipe), momentum=recipe.momentum))' 'optax.chain(optax.trace(decay=recipe.momentum),
                       optax.add_decayed_weights(recipe.weight_decay),
                       optax.scale_by_learning_rate(lr_schedule(recipe)))'
run "biased running variance in JAX (Flax's convention)" jax_impl/model.py '* (count / (count - 1))' ''
run "truncated He normal in JAX" jax_impl/model.py '"fan_out", "normal")' '"fan_out", "truncated_normal")'
