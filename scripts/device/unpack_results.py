"""Unpack what run_paper.sh sent back into results/runs/<run name>/, the run directories it continued.

    python scripts/device/unpack_results.py FILES_AT [--dest results/runs] [--force]

FILES_AT is the folder the device tool copied $OUT into. Each <run name>.tar.gz there holds one run directory
<run name>/ (members are checked to stay inside it), with the trainer's output in train.log and the GPU's
nvidia-smi record of each device slice beside it. It replaces results/runs/<run name>/ when that is the same
run (same backend and start time in config.json) at an earlier or the same step: the device continued it, so
the tarball holds its whole history. Any other existing destination is left alone unless --force. Unfinished
runs (no final.json) keep checkpoints/last.* so that they can be resumed here or on the next device call.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def last_step(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    return max((json.loads(line)["step"] for line in lines if line.strip()), default=0)


def same_run(a: Path, b: Path) -> bool:
    configs = [json.loads((run / "config.json").read_text()) for run in (a, b)]
    return all(configs[0].get(k) == configs[1].get(k) for k in ("backend", "created", "recipe"))


def safe_extract(tar: tarfile.TarFile, into: Path) -> None:
    root = into.resolve()
    for member in tar.getmembers():
        target = (into / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise SystemExit(f"error: refusing tar member {member.name!r} (not a plain file or folder inside)")
    tar.extractall(into)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files_at", help="the folder holding the files that came back from $OUT")
    parser.add_argument("--dest", default=str(REPO_ROOT / "results" / "runs"), help="where run folders go")
    parser.add_argument("--force", action="store_true", help="replace existing destination folders of other runs")
    args = parser.parse_args(argv)
    files_at, dest = Path(args.files_at), Path(args.dest)
    tarballs = sorted(files_at.glob("*.tar.gz"))
    if not tarballs:
        sys.exit(f"error: no run tarball (*.tar.gz) in {files_at}")
    dest.mkdir(parents=True, exist_ok=True)
    for tarball in tarballs:
        name = tarball.name.removesuffix(".tar.gz")
        with tempfile.TemporaryDirectory(dir=dest, prefix=".unpack-") as tmp:
            with tarfile.open(tarball, "r:gz") as tar:
                safe_extract(tar, Path(tmp))
            run = Path(tmp) / name
            if not (run / "config.json").is_file():
                sys.exit(f"error: {tarball} holds no {name}/config.json")
            target = dest / name
            if target.exists():
                continued = (target / "config.json").is_file() and same_run(run, target)
                if continued and last_step(run) < last_step(target):
                    sys.exit(f"error: {target} is at step {last_step(target):,}, the tarball only at "
                             f"{last_step(run):,}; nothing was replaced")
                if not continued and not args.force:
                    sys.exit(f"error: {target} exists and is another run; pass --force to replace it")
                shutil.rmtree(target)
            run.rename(target)
        final = target / "final.json"
        state = "finished" if final.is_file() else \
            f"NOT finished: step {last_step(target):,} (checkpoints/last.* kept for --resume)"
        print(f"{tarball.name} -> {target}: {state}")
        if final.is_file():
            print("  final.json:", json.dumps(json.loads(final.read_text()), sort_keys=True))
        print("  files:", ", ".join(sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
