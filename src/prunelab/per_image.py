"""Per-image correctness, compactly: which validation images a model got right.

Every point of the comparison is scored on the same images, so two points can be compared image
by image (a paired test) instead of as two independent accuracies. One bit per image: 2,500
images take 313 bytes, written as base64 text beside the point's metrics (not inside them, so
`dvc exp show` does not list them)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def encode(correct: Sequence[bool] | np.ndarray) -> str:
    """One bit per image, first image in the highest bit of the first byte, as base64."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def decode(text: str, images: int) -> np.ndarray:
    """The boolean vector `encode` wrote for `images` images."""
    packed = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    if len(packed) != (images + 7) // 8:
        raise ValueError(f"{len(packed)} bytes of correctness for {images} images")
    return np.unpackbits(packed, count=images).astype(bool)


def correct_path(metrics: Path) -> Path:
    """Where the per-image correctness of a point's (or the dense reference's) metrics lives."""
    return metrics.with_name(metrics.name.removesuffix(".json") + ".correct.json")
