"""Generated data in the on-disk CIFAR-10 format, for tests and demos (no network needed)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from prunelab.data import BASE_DIR, META, TEST_BATCH, TRAIN_BATCHES


def write_synthetic_archive(
    path: Path, n_train: int = 500, n_test: int = 200, seed: int = 0
) -> dict[str, str]:
    """Write a CIFAR-10-format .tar.gz of learnable generated images; return member md5s.

    Each class is a coloured pattern plus noise, so a small CNN learns it in an epoch or two.
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 215, size=(10, 3))
    freq = np.arange(10) % 5 + 1

    def make(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, 10, size=n)
        yy, xx = np.mgrid[0:32, 0:32]
        images = np.empty((n, 3, 32, 32), dtype=np.uint8)
        for i, c in enumerate(labels):
            stripes = np.sin((yy if c < 5 else xx) * freq[c] * np.pi / 16) * 40
            noise = rng.normal(0, 25, size=(3, 32, 32))
            images[i] = np.clip(palette[c][:, None, None] + stripes + noise, 0, 255)
        return images.reshape(n, -1), labels.tolist()

    members: dict[str, bytes] = {}
    per_batch = -(-n_train // len(TRAIN_BATCHES))
    train_x, train_y = make(n_train)
    for i, name in enumerate(TRAIN_BATCHES):
        sl = slice(i * per_batch, (i + 1) * per_batch)
        members[name] = pickle.dumps({"data": train_x[sl], "labels": train_y[sl]}, protocol=2)
    test_x, test_y = make(n_test)
    members[TEST_BATCH] = pickle.dumps({"data": test_x, "labels": test_y}, protocol=2)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    members[META] = pickle.dumps({"label_names": names}, protocol=2)

    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{BASE_DIR}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return {name: hashlib.md5(payload).hexdigest() for name, payload in members.items()}
