"""Recovering accuracy after pruning, as the comparison scores it: nothing (one-shot),
re-estimated BatchNorm statistics (seconds), fine-tuning for a fixed budget with masks held, or
learning-rate rewinding (the same budget at the baseline schedule's last learning rates).

One-shot accuracy after pruning is dominated by BatchNorm running statistics that no longer fit
the pruned network, not by which weights were removed; recalibrating them on a few thousand
training images separates the criteria at almost no cost.
"""

from __future__ import annotations

import torch
from torch import nn

from prunelab.data import Split, normalize
from prunelab.device import autocast, channels_last
from prunelab.params import FinetuneParams, TrainParams
from prunelab.train import fit, lr_at, planned_epochs, steps_per_epoch


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, images: torch.Tensor, *, batch_size: int, device: torch.device, dtype: torch.dtype
) -> None:
    """Re-estimate every BatchNorm's running mean and variance on uint8 `images` (a cumulative
    average over the batches), leaving every weight as it is."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts alike
    with channels_last(model.train(), device):
        for start in range(0, len(images), batch_size):
            with autocast(device, dtype):
                model(normalize(images[start : start + batch_size].to(device)))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.eval()


def fine_tune(
    model: nn.Module,
    train: Split,
    masks: dict[str, torch.Tensor],
    train_cfg: TrainParams,
    finetune: FinetuneParams,
    *,
    epochs: int,
    seed: int,
) -> None:
    """`epochs` of fine-tuning (finetune.* settings, seeded with `seed`) with pruned weights
    held at zero."""
    cfg = finetune.train_params(train_cfg, epochs=epochs).model_copy(update={"seed": seed})
    fit(model, train, cfg, masks=masks, label="recovery fine-tune")


def rewind_lr(
    model: nn.Module,
    train: Split,
    masks: dict[str, torch.Tensor],
    train_cfg: TrainParams,
    *,
    epochs: int,
    seed: int,
) -> None:
    """Learning-rate rewinding (Renda et al., ICLR 2020): `epochs` of training with masks held,
    at the learning rates the baseline's own schedule (train.*) used in its last `epochs`
    epochs, instead of fine-tuning's small constant-peak schedule."""
    cfg = train_cfg.model_copy(update={"epochs": epochs, "seed": seed})
    per_epoch = steps_per_epoch(len(train), train_cfg.batch_size)
    baseline_epochs = planned_epochs(train_cfg)
    full = per_epoch * baseline_epochs
    skipped = per_epoch * max(0, baseline_epochs - epochs)

    def schedule(step: int, total: int) -> float:
        return lr_at(skipped + step, max(full, skipped + total), train_cfg.lr, train_cfg.warmup)

    fit(model, train, cfg, masks=masks, label="lr rewinding", lr_schedule=schedule)
