"""Shared by tests/ and parity_tests/: four virtual CPU devices (chex's fake devices), set before any JAX operation."""

import chex

chex.set_n_cpu_devices(4)
