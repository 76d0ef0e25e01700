"""scripts/benchmark.py end to end at a toy size: both backends timed in one run, in turns, into one report."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_report_times_both_backends_in_rounds(tmp_path):
    out = tmp_path / "benchmarks.md"
    out.write_text("old table\n<!-- attempts -->\n## Attempts\n\nkept by hand\n")
    subprocess.run([sys.executable, "scripts/benchmark.py", "--device", "cpu", "--depth", "8", "--batch-sizes", "8",
                    "--steps", "3", "--rounds", "2", "--warmup", "1", "--synthetic", "--matmul-size", "64",
                    "--out", str(out)], check=True, cwd=ROOT, capture_output=True, timeout=600)
    report = out.read_text()
    for backend in ("PyTorch", "PyTorch channels_last", "JAX"):
        assert f"| 8 | {backend} |" in report
    assert "2 rounds, the backends in turn in each" in report and "2 + 1 = 3 steps" in report
    assert "--jax-conv auto (oneDNN through XLA's FFI, jax_impl/cpu_conv)" in report
    assert "old table" not in report and report.endswith("kept by hand\n")
