"""Inference: logits for uint8 images, with test-time augmentation, and accuracy on a split."""

from __future__ import annotations

import torch
from torch import nn

from prunelab.data import Split, normalize
from prunelab.device import autocast, channels_last
from prunelab.threads import rebalance

TTA_MODES = ("none", "flip", "flip_translate")


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift a batch by (dy, dx) pixels, filling the border by reflection."""
    pad = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = nn.functional.pad(x, (pad,) * 4, mode="reflect")
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 100,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    tta: str = "none",
) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images, test-time augmented as `tta` says
    (none, flip, flip_translate: see EvaluateParams.tta). On a CPU the activations of a batch of
    100 stay in cache, 1.8× faster than 1000 (docs/recipe.md, "Scoring: small batches")."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown tta mode {tta!r}")

    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return (model(x).float() + model(x.flip(-1)).float()) / 2

    device = device or next(model.parameters()).device
    was_training = model.training
    chunks = []
    with channels_last(model.eval(), device):
        for start in range(0, len(images), batch_size):
            rebalance()
            x = normalize(images[start : start + batch_size].to(device))
            with autocast(device, dtype):
                logits = model(x).float() if tta == "none" else mirrored(x)
                if tta == "flip_translate":
                    # each one-pixel shift once, the mirror with one of them: 4 passes
                    shifted = model(translate(x, 1, 1)).float() + model(translate(x, -1, -1).flip(-1)).float()
                    logits = (logits + shifted / 2) / 2
            chunks.append(logits.cpu())
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, 10)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correct top-1 predictions (metrics round it when they are written)."""
    return (logits.argmax(1) == labels).float().mean().item()


def split_correct(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    tta: str = "none",
) -> torch.Tensor:
    """Which images of a split `model` gets right (bool, one per image): the one way every stage
    scores a model."""
    logits = predict(model, split.images, batch_size=batch_size, device=device, dtype=dtype, tta=tta)
    return logits.argmax(1) == split.labels


def split_accuracy(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    tta: str = "none",
) -> float:
    """Accuracy of `model` on a whole split."""
    correct = split_correct(model, split, batch_size=batch_size, device=device, dtype=dtype, tta=tta)
    return correct.float().mean().item()
