"""Framework-neutral core shared by `jax_impl` and `torch_impl`: data, augmentation plan, recipe, CLI,
run directory and the neutral weights format. Imports NumPy only."""
