"""Print one JSON object describing the data this machine sees, so two machines can be compared:
split sizes, per-class counts, content hashes, a checksum of the mean image and the plan hashes of epochs 0, 1.

    python scripts/data_info.py [--data-dir D] [--data-source tfds --tfds-data-dir T] [--seed S] [--split-seed S]
                                [--full-train]
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cifar_core import cli, data, plan  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    cli.add_data_source_flags(parser)
    parser.add_argument("--seed", type=int, default=0, help="augmentation-plan seed")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--full-train", action="store_true")
    args = parser.parse_args(argv)
    try:
        dataset = data.load(args.data_dir, source=args.data_source or "auto", tfds_data_dir=args.tfds_data_dir)
    except data.DataError as error:
        cli.fail(error)
    splits = data.make_splits(dataset, split_seed=args.split_seed, full_train=args.full_train)
    labels = np.asarray(dataset.train_labels)

    def class_counts(y):
        return np.bincount(y, minlength=data.NUM_CLASSES).tolist()

    n_train = len(splits.train_indices)
    info = {
        "source": dataset.source,
        "sizes": {"train": n_train, "val": len(splits.val_indices), "test": len(dataset.test_labels)},
        "class_counts": {"train": class_counts(labels[splits.train_indices]),
                         "val": class_counts(labels[splits.val_indices]),
                         "test": class_counts(np.asarray(dataset.test_labels))},
        "content_sha256": dataset.content_sha256,
        "content_matches_official": dataset.content_sha256 == data.CONTENT_SHA256,
        "split_sha256": hashlib.sha256(splits.val_indices.astype("<i8").tobytes()).hexdigest(),
        "mean_image_sha256": hashlib.sha256(splits.mean_image.astype("<f4").tobytes()).hexdigest(),
        "mean_rgb": [round(float(v), 5) for v in splits.mean_image.mean(axis=(0, 1))],
        "plan_sha256": {f"epoch_{e}": plan.plan_hash(args.seed, e, n_train) for e in (0, 1)},
        "seed": args.seed, "split_seed": args.split_seed,
    }
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
