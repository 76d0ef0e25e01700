"""Unpack what run_paper.sh sent back into results/runs/<backend>-resnet<depth>-<iterations>-<gpu>/.

    python scripts/device/unpack_results.py FILES_AT [--dest results/runs] [--gpu h100] [--force]

FILES_AT is the folder the device tool copied $OUT into. For each <backend>-run.tar.gz there the run directory
is extracted (members are checked to stay inside it), named from its config.json (depth, iterations: 64000 ->
"64k") and the GPU (from nvidia-smi.txt's "# gpu:" line, e.g. "NVIDIA H100 80GB HBM3" -> "h100"; "cpu" when no
GPU), and nvidia-smi.txt is copied beside it. The trainer's output is already inside as train.log.
An existing destination is left alone unless --force (then it is replaced: a resumed run's tarball holds the
whole run). Unfinished runs (no final.json) keep checkpoints/last.* so that they can be resumed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def gpu_slug(files_at: Path, override: str | None) -> str:
    if override:
        return override
    smi = files_at / "nvidia-smi.txt"
    if smi.is_file():
        first = smi.read_text(errors="replace").splitlines()[:1]
        name = first[0].removeprefix("# gpu:").strip() if first and first[0].startswith("# gpu:") else ""
        if name and name != "none":
            match = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", name.replace("NVIDIA", ""))
            return (match.group(1) if match else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")).lower()
    return "cpu"


def iterations_tag(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n}it"


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
    parser.add_argument("--gpu", help="GPU tag for the folder names (default: read from nvidia-smi.txt)")
    parser.add_argument("--force", action="store_true", help="replace existing destination folders")
    args = parser.parse_args(argv)
    files_at, dest = Path(args.files_at), Path(args.dest)
    tarballs = sorted(files_at.glob("*-run.tar.gz"))
    if not tarballs:
        sys.exit(f"error: no *-run.tar.gz in {files_at}")
    gpu = gpu_slug(files_at, args.gpu)
    dest.mkdir(parents=True, exist_ok=True)
    for tarball in tarballs:
        backend = tarball.name.removesuffix("-run.tar.gz")
        with tempfile.TemporaryDirectory(dir=dest, prefix=".unpack-") as tmp:
            with tarfile.open(tarball, "r:gz") as tar:
                safe_extract(tar, Path(tmp))
            run = Path(tmp) / f"{backend}-run"
            if not (run / "config.json").is_file():
                sys.exit(f"error: {tarball} holds no {backend}-run/config.json")
            config = json.loads((run / "config.json").read_text())
            recipe = config["recipe"]
            name = f"{backend}-resnet{recipe['depth']}-{iterations_tag(recipe['iterations'])}-{gpu}"
            target = dest / name
            if target.exists():
                if not args.force:
                    sys.exit(f"error: {target} exists; pass --force to replace it")
                shutil.rmtree(target)
            if (files_at / "nvidia-smi.txt").is_file():
                shutil.copyfile(files_at / "nvidia-smi.txt", run / "nvidia-smi.txt")
            run.rename(target)
        final = target / "final.json"
        state = "finished" if final.is_file() else "NOT finished (checkpoints/last.* kept for --resume)"
        print(f"{tarball.name} -> {target}: {state}")
        if final.is_file():
            print("  final.json:", json.dumps(json.loads(final.read_text()), sort_keys=True))
        print("  files:", ", ".join(sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
