"""How fast the two backends train: one entry point for every measurement, one module of scripts/bench/ each
(its docstring says what is timed).

    python scripts/benchmark.py [steps] [--device cpu|cuda] [--depth 32] [--batch-sizes 128 512] [--steps 30]
        both backends' training and evaluation steps side by side, against the float32 matmul rate, and the
        NumPy input pipeline (the default)
    python scripts/benchmark.py convs [--device cpu|cuda] [--batch-size 128]
        one 3x3 convolution and its gradients at ResNet-32's stage shapes, PyTorch against JAX's XLA and oneDNN
        kernels
    python scripts/benchmark.py placement [--seconds 120] [--data-dir D]
        the two paper runs on this CPU, one after the other or side by side
    python scripts/benchmark.py cuda [--dry-run] [--depths 20 32 56 110] [--precisions fp32 tf32 bf16]
        the GPU configurations: precisions, dispatch, N runs sharing the GPU

Each subcommand is a frozen Setup of its flags, measure(setup) -> results and render(results) -> its report, which
is printed and becomes the subcommand's section of --out (results/benchmarks.md: one report, each section rewritten
by its own subcommand, the hand-written parts kept; the dry run only prints).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # cifar_core, jax_impl, torch_impl; bench/ is beside

from bench import convs, cuda, placement, steps  # noqa: E402
from bench.common import Provenance, log, write_section  # noqa: E402

SUBCOMMANDS = {"steps": (steps, "training and evaluation steps of both backends side by side (the default)"),
               "convs": (convs, "one convolution and its gradients, PyTorch against JAX"),
               "placement": (placement, "the two paper runs on this CPU: one after the other, or side by side"),
               "cuda": (cuda, "the GPU configurations (--dry-run: list them, run their code paths on the CPU)")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="subcommand", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=help_text, description=module.__doc__,
                                                 formatter_class=argparse.RawDescriptionHelpFormatter))
    cuda.add_worker_arguments(commands.add_parser("worker", help="one copy of a cuda configuration (cuda runs it)"))
    return parser


def setup_of(module, args: argparse.Namespace):
    """The subcommand's frozen Setup from its parsed flags (lists become tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(module.Setup)}
    return module.Setup(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "worker", "-h", "--help"):
        argv = ["steps", *argv]  # the step comparison, as the command ran before it had subcommands
    args = build_parser().parse_args(argv)
    if args.subcommand == "worker":
        print(json.dumps(cuda.worker(args.config, args.timing, args.barrier)))
        return
    module, _ = SUBCOMMANDS[args.subcommand]
    setup = setup_of(module, args)
    report = module.render(module.measure(setup, Provenance.now(argv)))
    print(report)
    if not getattr(setup, "dry_run", False):
        name = module.section(setup) if hasattr(module, "section") else args.subcommand
        write_section(args.out, name, report, args.subcommand)
        log(f"wrote its section of {args.out}")


if __name__ == "__main__":
    main()
