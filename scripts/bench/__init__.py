"""The measurements of scripts/benchmark.py, one module per subcommand, and what they share."""
