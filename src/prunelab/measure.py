"""Honest numbers: accuracy from predictions, sparsity counted from zero weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunelab.models import prunable_layers


def accuracy_report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    preds = logits.argmax(1)
    n = len(classes)
    confusion = torch.bincount(labels * n + preds, minlength=n * n).view(n, n)
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    return {
        "acc": round((preds == labels).float().mean().item(), 6),
        "per_class_acc": {c: round(a, 6) for c, a in zip(classes, per_class.tolist(), strict=True)},
    }


def confusion_rows(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> list[dict[str, str]]:
    """One row per test image, the shape DVC's confusion template reads."""
    preds = logits.argmax(1).tolist()
    return [
        {"actual": classes[a], "predicted": classes[p]} for a, p in zip(labels.tolist(), preds, strict=True)
    ]


def sparsity_report(model: nn.Module) -> dict[str, Any]:
    """Zero counts of every prunable layer's weight, and of all parameters."""
    layers: dict[str, dict[str, Any]] = {}
    zeros_total = weights_total = 0
    for name, module in prunable_layers(model).items():
        weight = module.weight.detach()
        zeros = int((weight == 0).sum())
        entry: dict[str, Any] = {
            "zeros": zeros,
            "total": weight.numel(),
            "sparsity": round(zeros / weight.numel(), 6),
        }
        if weight.ndim > 1:  # whole output channels that are zero: what compaction can remove
            entry["zero_channels"] = int((weight.flatten(1) == 0).all(1).sum())
            entry["channels"] = weight.shape[0]
        layers[name] = entry
        zeros_total += zeros
        weights_total += weight.numel()
    params = [p.detach() for p in model.parameters()]
    params_total = sum(p.numel() for p in params)
    params_nonzero = sum(int(p.count_nonzero()) for p in params)
    return {
        "sparsity": round(zeros_total / max(1, weights_total), 6),
        "params": params_total,
        "params_nonzero": params_nonzero,
        "params_zero": params_total - params_nonzero,
        "layers": layers,
    }
