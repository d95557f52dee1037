"""CIFAR-10 in memory: the batches as uint8 tensors, the validation hold-out, and batched
augmentation (random crop with padding, horizontal flip) instead of per-sample PIL transforms.

The whole data set is 150 MB as uint8, so it lives in memory.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from prunelab.errors import UserError

BASE_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"


@dataclass
class Split:
    images: torch.Tensor  # uint8, N×3×32×32
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)


class _ArrayUnpickler(pickle.Unpickler):
    """The CIFAR batches are pickles: allow only what numpy arrays need, never arbitrary code."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(f"{path}: missing; run the fetch stage first (dvc repro fetch)") from None
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise UserError(f"{path}: not a CIFAR-10 batch ({exc}); fetch the data again") from None


def load_split(root: str | Path, train: bool) -> Split:
    root = Path(root)
    batches = [_read_batch(root / name) for name in (TRAIN_BATCHES if train else [TEST_BATCH])]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))  # concatenate made a fresh array
    return Split(images=images, labels=torch.from_numpy(labels))


def split_validation(train: Split, val_size: int, seed: int) -> tuple[Split, Split]:
    """A seeded hold-out of `val_size` training images (the same for every stage and run)."""
    if val_size >= len(train):
        raise UserError(f"data.val_size = {val_size}: must be smaller than the {len(train)} training images")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    val, rest = order[:val_size], order[val_size:].sort().values
    return Split(train.images[rest], train.labels[rest]), Split(train.images[val], train.labels[val])


def train_and_validation(root: str | Path, val_size: int, seed: int, limit: int = 0) -> tuple[Split, Split]:
    """The training split, and the first `limit` images (0 = all) of the validation hold-out,
    for scoring choices."""
    train, val = split_validation(load_split(root, train=True), val_size, seed)
    if not len(val):
        raise UserError("data.val_size = 0: scoring needs the validation split; set it > 0")
    return train, Split(val.images[:limit], val.labels[:limit]) if limit else val


def class_names(root: str | Path) -> list[str]:
    return list(_read_batch(Path(root) / META)["label_names"])


# ---------------------------------------------------------------------------------------------
# Batched augmentation and normalisation

MEAN = torch.tensor([125.307, 122.961, 113.8575]).view(1, 3, 1, 1)
STD = torch.tensor([62.9932, 62.0887, 66.7048]).view(1, 3, 1, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×3×H×W → float, per-channel standardised, channels_last for fast CPU/GPU convs."""
    out = (images.float() - MEAN.to(images.device)) / STD.to(images.device)
    return out.contiguous(memory_format=torch.channels_last)


def random_crop_flip(
    images: torch.Tensor, pad: int, generator: torch.Generator, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Random crop with reflect padding and horizontal flip, for a whole uint8 batch at once;
    `flip` (bool per image) replaces the coin toss."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images.float(), (pad,) * 4, mode="reflect") if pad else images.float()
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    if flip is None:
        flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # n×1×h×1
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # n×1×1×w
    batch = torch.arange(n)[:, None, None, None]
    channel = torch.arange(3)[None, :, None, None]
    return padded[batch, channel, rows, cols].to(torch.uint8)
