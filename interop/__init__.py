"""Weights across the two backends: the one place that knows both checkpoint formats.

Layers point one way: cifar_core (NumPy only) <- jax_impl, torch_impl (each knows its own checkpoint format and
the neutral one) <- interop (either format, recognised by content) <- the evaluate commands and scripts/convert.py.
"""
