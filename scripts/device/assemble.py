"""Rebuild the official cifar-10-batches-py/ folder from the parts written by pack_data.py.

    python3 scripts/device/assemble.py [--stash DIR] [--parts-dir DIR] [--out DIR]

Each part is taken from the stash (scripts/device/stash.sh put the earlier ones there) or from --parts-dir
(the part carried by this call, build/device/ of the checkout); its size and SHA-256 must match manifest.json.
The parts are decompressed as one xz stream, the stream's SHA-256 and the content hashes of the train and test
`data` rows are checked against the manifest and against cifar_core.data.CONTENT_SHA256, and
<out>/cifar-10-batches-py/ is written in the official format (data_batch_1..5 of 10,000 images each in the
original order, test_batch, batches.meta; pickle protocol 2; keys 'batch_label', 'labels', 'data',
'filenames' where the file names are placeholders). Finally the normal loader (cifar_core.data.load) reads the
folder back, which also fills its decoded-array cache ($RESNET_CIFAR_CACHE) for the trainers.

Any mismatch exits non-zero with a message saying which check failed. A folder already assembled and
verified by an earlier call is reused (re-checked through the loader) unless --force is given.
Pass --out's folder to the trainers as --data-dir.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from cifar_core import data  # noqa: E402

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MARKER = "assembled.json"


class AssembleError(RuntimeError):
    pass


def sha256_file(path: Path) -> str:
    return data.file_digest(path, "sha256")


def find_manifest(dirs: list[Path]) -> Path:
    for directory in dirs:
        if (directory / "manifest.json").is_file():
            return directory / "manifest.json"
    raise AssembleError(f"no manifest.json in {', '.join(map(str, dirs))}; carry build/device/manifest.json")


def find_parts(manifest: dict, dirs: list[Path]) -> list[Path]:
    """The path of each part, checked by size and SHA-256; raises naming every part missing or damaged."""
    found, problems = [], []
    for part in manifest["parts"]:
        chosen, seen = None, []
        for directory in dirs:
            path = directory / part["name"]
            if not path.is_file():
                continue
            size = path.stat().st_size
            if size == part["size"] and sha256_file(path) == part["sha256"]:
                chosen = path
                break
            seen.append(f"{path} ({size:,} bytes, wrong size or SHA-256)")
            print(f"part {part['name']}: REJECTED {seen[-1]}")
        if chosen is None:
            problems.append(f"{part['name']}: " + ("; ".join(seen) if seen else "not found") +
                            f" (expected {part['size']:,} bytes, sha256 {part['sha256']})")
        else:
            print(f"part {part['name']}: {chosen} ok")
            found.append(chosen)
    if problems:
        raise AssembleError("parts missing or damaged (stash them with scripts/device/stash.sh K, one call each):\n  "
                            + "\n  ".join(problems))
    return found


def decompress(paths: list[Path], manifest: dict) -> bytes:
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    compressed_digest, out = hashlib.sha256(), []
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                compressed_digest.update(chunk)
                if decompressor.eof:
                    raise AssembleError(f"{path}: data after the end of the xz stream")
                out.append(decompressor.decompress(chunk))
    if not decompressor.eof or decompressor.unused_data:
        raise AssembleError("the xz stream is truncated or followed by stray bytes")
    if compressed_digest.hexdigest() != manifest["compressed_sha256"]:
        raise AssembleError("the concatenated parts' SHA-256 differs from the manifest's compressed_sha256")
    stream = b"".join(out)
    if len(stream) != manifest["stream_size"] or hashlib.sha256(stream).hexdigest() != manifest["stream_sha256"]:
        raise AssembleError(f"the decompressed stream ({len(stream):,} bytes) differs from the manifest's "
                            f"({manifest['stream_size']:,} bytes, sha256 {manifest['stream_sha256']})")
    return stream


def arrays_from(stream: bytes, manifest: dict) -> dict[str, np.ndarray]:
    arrays = {}
    for name, spec in manifest["arrays"].items():
        raw = stream[spec["offset"]:spec["offset"] + spec["nbytes"]]
        if hashlib.sha256(raw).hexdigest() != spec["sha256"]:
            raise AssembleError(f"array {name}: SHA-256 differs from the manifest")
        arrays[name] = np.frombuffer(raw, np.uint8).reshape(spec["shape"])
    got = {"train": hashlib.sha256(arrays["train_data"].tobytes()).hexdigest(),
           "test": hashlib.sha256(arrays["test_data"].tobytes()).hexdigest()}
    for split in ("train", "test"):
        if got[split] != data.CONTENT_SHA256[split] or got[split] != manifest["content_sha256"][split]:
            raise AssembleError(f"{split} content SHA-256 {got[split]} differs from the official "
                                f"{data.CONTENT_SHA256[split]}: these are not the CIFAR-10 images")
    if arrays["train_data"].shape != (50_000, 3072) or arrays["test_data"].shape != (10_000, 3072):
        raise AssembleError("unexpected array shapes")
    if arrays["train_labels"].max() >= data.NUM_CLASSES or arrays["test_labels"].max() >= data.NUM_CLASSES:
        raise AssembleError("labels out of range")
    print(f"content SHA-256 ok: train {got['train']}, test {got['test']}")
    return arrays


def write_batches(arrays: dict[str, np.ndarray], folder: Path) -> None:
    def dump(name: str, obj: dict) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    per = 10_000
    for i, name in enumerate(data.TRAIN_FILES):
        rows = slice(i * per, (i + 1) * per)
        dump(name, {"batch_label": f"training batch {i + 1} of 5",
                    "labels": [int(v) for v in arrays["train_labels"][rows]],
                    "data": np.ascontiguousarray(arrays["train_data"][rows]),
                    "filenames": [f"train_{j:05d}.png" for j in range(i * per, (i + 1) * per)]})
    dump(data.TEST_FILE, {"batch_label": "testing batch 1 of 1",
                          "labels": [int(v) for v in arrays["test_labels"]],
                          "data": np.ascontiguousarray(arrays["test_data"]),
                          "filenames": [f"test_{j:05d}.png" for j in range(len(arrays["test_labels"]))]})
    dump("batches.meta", {"num_cases_per_batch": per, "label_names": LABEL_NAMES, "num_vis": 3072})
    (folder / "readme.txt").write_text("Rebuilt by scripts/device/assemble.py from the official CIFAR-10 "
                                       "release; file names are placeholders.\n")


def check_with_loader(out: Path, manifest: dict) -> None:
    """Read the folder the way the trainers will, and compare everything with the manifest."""
    loaded = data.load(out, download=False)
    if loaded.content_sha256 != data.CONTENT_SHA256:
        raise AssembleError(f"cifar_core.data.load({out}) reports content {loaded.content_sha256}, "
                            f"not the official {data.CONTENT_SHA256}")
    for split in ("train", "test"):
        labels = np.asarray(getattr(loaded, f"{split}_labels")).astype(np.uint8).tobytes()
        if hashlib.sha256(labels).hexdigest() != manifest["arrays"][f"{split}_labels"]["sha256"]:
            raise AssembleError(f"cifar_core.data.load({out}): {split} labels differ from the manifest")
    print(f"cifar_core.data.load({out}) reads it: {len(loaded.train_labels):,} train and "
          f"{len(loaded.test_labels):,} test images, official content hashes; source {loaded.source}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stash_default = os.environ.get("STASH_DIR", "/root/cifar-stash")
    parser.add_argument("--stash", default=stash_default, help="where stash.sh kept the earlier parts")
    parser.add_argument("--parts-dir", default=str(REPO_ROOT / "build" / "device"),
                        help="where this call's carried part and manifest are")
    parser.add_argument("--out", help="folder to hold cifar-10-batches-py/ (default <stash>/data)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a verified folder is there")
    parser.add_argument("--no-loader-check", action="store_true",
                        help="skip reading the result back with cifar_core.data.load (and filling its cache)")
    args = parser.parse_args(argv)
    started = time.time()
    stash, parts_dir = Path(args.stash), Path(args.parts_dir)
    out = Path(args.out) if args.out else stash / "data"
    folder = out / data.BATCHES_DIR
    try:
        manifest = json.loads(find_manifest([parts_dir, stash]).read_text())
        marker = folder / MARKER
        if not args.force and marker.is_file():
            if json.loads(marker.read_text()).get("stream_sha256") == manifest["stream_sha256"]:
                print(f"{folder} was assembled by an earlier call; checking it again through the loader")
                check_with_loader(out, manifest)
                print(f"assemble: reused {folder} in {time.time() - started:.1f} s")
                return 0
        paths = find_parts(manifest, [stash, parts_dir])
        stream = decompress(paths, manifest)
        print(f"decompressed {manifest['compressed_size']:,} -> {len(stream):,} bytes, stream SHA-256 ok "
              f"({time.time() - started:.1f} s)")
        arrays = arrays_from(stream, manifest)
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{data.BATCHES_DIR}.tmp"))
        write_batches(arrays, tmp)
        (tmp / MARKER).write_text(json.dumps({"stream_sha256": manifest["stream_sha256"],
                                              "content_sha256": manifest["content_sha256"]}, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        print(f"wrote {folder} ({sum(p.stat().st_size for p in folder.iterdir()):,} bytes)")
        if not args.no_loader_check:
            check_with_loader(out, manifest)
    except AssembleError as error:
        print(f"assemble: FAILED: {error}", file=sys.stderr)
        return 1
    print(f"assemble: done in {time.time() - started:.1f} s; use --data-dir {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
