"""Shared by tests/ and parity_tests/: four virtual CPU devices (chex's fake devices), set before any JAX operation,
and one persistent XLA compilation cache for the whole test run.

Most tests compile the same small ResNet programs again (every trainer the tests start builds its own jitted
steps, in this process or in another): the cache, in a folder of its own for the run and shared with the trainers
the tests start through the environment, turns each repeat into a load. A cached executable is the one XLA
compiled, so no result changes; $JAX_COMPILATION_CACHE_DIR, when set, is used as it is. A size limit is set because
only then does JAX lock the folder around each read and write: trainers started side by side compile the same
programs at once, and without the lock one could read an entry another is still writing.
"""

import os
import shutil
import tempfile

import chex

chex.set_n_cpu_devices(4)

_OWN_CACHE = None


def pytest_configure(config):
    global _OWN_CACHE
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        _OWN_CACHE = tempfile.mkdtemp(prefix="jax-compilation-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    jax.config.update("jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
