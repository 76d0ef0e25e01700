"""Pack CIFAR-10 into a few xz parts small enough to travel to the device machine one call at a time.

    python scripts/device/pack_data.py [--data-dir D] [--out build/device] [--parts N]

The byte stream is the dataset in the official layout, nothing else:

    train_data   (50000, 3072) uint8   the concatenated `data` rows of data_batch_1..5, in order
    test_data    (10000, 3072) uint8   test_batch's `data` rows
    train_labels (50000,)      uint8
    test_labels  (10000,)      uint8

Each row is 1024 red, 1024 green, 1024 blue values of a 32x32 image, i.e. planar (3, 32, 32). The stream is
compressed as one .xz stream (delta filter, dist 32 = the pixel above, then LZMA2 preset 9|extreme with
lc=4, pb=0: about 124 MB, against 170 MB for the official .tar.gz) and cut into --parts equal pieces: by
default the fewest that each fit into one call beside the working tree that travels with it (git's tracked and
untracked-not-ignored files, measured now; the committed run directories make it grow).
manifest.json records each part's size and SHA-256, the arrays' offsets and shapes, and the content hashes
that scripts/device/assemble.py checks on the device.

Everything written here is derived from CIFAR-10: keep it under an ignored folder (build/ is ignored) and
never commit it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from cifar_core import data  # noqa: E402

FORMAT = "cifar10-planar-xz-v1"
CALL_LIMIT = 64 * 2**20  # what one device call carries: the working tree and the carried paths
HEADROOM = 4 * 2**20  # the manifest, and run directories that grow between packing and the calls


def working_tree_bytes(root: Path = REPO_ROOT) -> int:
    """Bytes of the files a device call sends besides the carried ones: git's tracked and untracked-not-ignored
    files (0 outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    files = {root / name.decode() for name in listed.split(b"\0") if name}
    return sum(f.stat().st_size for f in files if f.is_file())


def parts_needed(compressed_size: int, tree_bytes: int) -> int:
    room = CALL_LIMIT - tree_bytes - HEADROOM
    if room <= 0:
        sys.exit(f"error: the working tree alone ({tree_bytes / 2**20:.1f} MiB) leaves no room in a device call's "
                 f"{CALL_LIMIT // 2**20} MiB; move large untracked files out of the checkout or add them to .gitignore.")
    return -(-compressed_size // room)


def part_name(k: int, n: int) -> str:
    return f"cifar10.part{k}of{n}"


def build_stream(dataset: data.Cifar10) -> tuple[bytes, dict]:
    """The raw byte stream and the table of its arrays."""
    def rows(images_nhwc) -> np.ndarray:  # back to the official (N, 3072) planar rows
        images = np.asarray(images_nhwc)
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)

    arrays = {"train_data": rows(dataset.train_images), "test_data": rows(dataset.test_images),
              "train_labels": np.asarray(dataset.train_labels).astype(np.uint8),
              "test_labels": np.asarray(dataset.test_labels).astype(np.uint8)}
    table, chunks, offset = {}, [], 0
    for name, array in arrays.items():
        raw = array.tobytes()
        table[name] = {"offset": offset, "nbytes": len(raw), "shape": list(array.shape), "dtype": "uint8",
                       "sha256": hashlib.sha256(raw).hexdigest()}
        chunks.append(raw)
        offset += len(raw)
    return b"".join(chunks), table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO_ROOT.parent / "shared" / "data" / "cifar10"),
                        help="folder holding cifar-10-python.tar.gz or cifar-10-batches-py/")
    parser.add_argument("--out", default=str(REPO_ROOT / "build" / "device"), help="where the parts go")
    parser.add_argument("--parts", type=int, default=None,
                        help="number of pieces (default: the fewest that each fit into a call beside the working tree)")
    parser.add_argument("--delta-dist", type=int, default=32,
                        help="xz delta filter distance (1..256; 32 = same column, previous image row)")
    parser.add_argument("--preset", type=int, default=9, help="LZMA2 preset (the 'extreme' flag is always on)")
    parser.add_argument("--lc", type=int, default=4, help="LZMA2 literal context bits")
    parser.add_argument("--pb", type=int, default=0, help="LZMA2 position bits")
    args = parser.parse_args(argv)

    started = time.time()
    dataset = data.load(args.data_dir, download=False)
    stream, table = build_stream(dataset)
    got = {"train": table["train_data"]["sha256"], "test": table["test_data"]["sha256"]}
    if got != data.CONTENT_SHA256:
        sys.exit(f"error: {dataset.source} is not the official CIFAR-10 (content SHA-256 {got}, "
                 f"expected {data.CONTENT_SHA256}); refusing to pack it.")
    print(f"loaded {dataset.source}: {len(stream):,} bytes, content hashes match the official release")

    filters = [{"id": lzma.FILTER_DELTA, "dist": args.delta_dist},
               {"id": lzma.FILTER_LZMA2, "preset": args.preset | lzma.PRESET_EXTREME, "lc": args.lc,
                "lp": 0, "pb": args.pb}]
    compressed = lzma.compress(stream, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)
    print(f"compressed to {len(compressed):,} bytes ({len(compressed) / len(stream):.3f}) "
          f"in {time.time() - started:.0f} s")

    tree = working_tree_bytes()
    fewest = parts_needed(len(compressed), tree)
    args.parts = args.parts or fewest
    size = -(-len(compressed) // args.parts)
    if args.parts < fewest:
        sys.exit(f"error: {args.parts} parts of {size:,} bytes do not fit into a call beside the working tree "
                 f"({tree:,} bytes); use --parts {fewest} or more.")
    print(f"working tree {tree / 2**20:.1f} MiB: {args.parts} parts of {size / 2**20:.1f} MiB")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("cifar10.part*"):
        stale.unlink()
    parts = []
    for k in range(1, args.parts + 1):
        piece = compressed[(k - 1) * size:k * size]
        name = part_name(k, args.parts)
        (out / name).write_bytes(piece)
        parts.append({"index": k, "name": name, "size": len(piece), "sha256": hashlib.sha256(piece).hexdigest()})

    manifest = {
        "format": FORMAT,
        "layout": "stream = train_data | test_data | train_labels | test_labels; data rows are the official "
                  "(N, 3072) uint8 rows (R plane, G plane, B plane of 32x32); labels uint8",
        "compression": {"container": "xz", "check": "crc64",
                        "filters": [{"id": "delta", "dist": args.delta_dist},
                                    {"id": "lzma2", "preset": f"{args.preset}|extreme", "lc": args.lc, "lp": 0,
                                     "pb": args.pb}]},
        "stream_size": len(stream), "stream_sha256": hashlib.sha256(stream).hexdigest(),
        "compressed_size": len(compressed), "compressed_sha256": hashlib.sha256(compressed).hexdigest(),
        "arrays": table,
        "content_sha256": dict(data.CONTENT_SHA256),
        "batches": {"train_files": list(data.TRAIN_FILES), "test_file": data.TEST_FILE, "images_per_batch": 10_000},
        "parts": parts,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    for part in parts:
        print(f"{out / part['name']}: {part['size']:,} bytes ({part['size'] / 2**20:.1f} MiB)  sha256 {part['sha256']}")
    print(f"{out / 'manifest.json'}: {(out / 'manifest.json').stat().st_size:,} bytes")
    print(f"total {len(compressed):,} bytes ({len(compressed) / 1e6:.1f} MB) in {len(parts)} parts; "
          f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
