"""Recovering accuracy after pruning, as the comparison scores it: nothing (one-shot),
re-estimated BatchNorm statistics (seconds), fine-tuning for a fixed budget with masks held (with
or without distillation from the dense model), or learning-rate rewinding (the same budget at
the baseline schedule's last learning rates). Training with masks held runs at the compacted
model's cost (`fit_masked`), for the finetune stage too.

One-shot accuracy after pruning is dominated by BatchNorm running statistics that no longer fit
the pruned network, not by which weights were removed; recalibrating them on a few thousand
training images separates the criteria at almost no cost.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunelab.compact import compact_form, expand_into
from prunelab.data import Split, normalize
from prunelab.device import Runtime, autocast, channels_last
from prunelab.params import FinetuneParams, TrainParams
from prunelab.train import Distillation, EpochRecord, fit, lr_at, planned_epochs, steps_per_epoch


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


def fit_masked(
    model: nn.Module,
    train: Split,
    cfg: TrainParams,
    masks: dict[str, torch.Tensor],
    *,
    tolerance: float,
    **fit_options: Any,
) -> list[EpochRecord]:
    """`fit` with pruned weights held at zero, at the cost of the model without its pruned
    channels: where whole channels are pruned, their compacted twin trains (the same result up
    to rounding, compact.compact_form) and is written back into `model`."""
    form = compact_form(model, masks, train.images[:64], tolerance)
    if form is None:
        return fit(model, train, cfg, masks=masks, **fit_options)
    history = fit(form.model, train, cfg, masks=form.masks, **fit_options)
    expand_into(form, model)
    return history


def budgeted(train: Split, epochs: float, seed: int) -> tuple[Split, int]:
    """The images and whole epochs of a fine-tuning budget: below one epoch, one pass over that
    fraction of the training split, drawn with `seed`."""
    if epochs >= 1:
        return train, int(epochs)
    count = max(1, round(len(train) * epochs))
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
    return Split(train.images[chosen], train.labels[chosen]), 1


def fine_tune(
    model: nn.Module,
    train: Split,
    masks: dict[str, torch.Tensor],
    train_cfg: TrainParams,
    finetune: FinetuneParams,
    *,
    epochs: float,
    seed: int,
    tolerance: float,
    teacher: nn.Module | None = None,
    runtime: Runtime | None = None,
) -> None:
    """`epochs` of fine-tuning (finetune.* settings, seeded with `seed`; a fraction of one epoch
    sees that fraction of the images) with pruned weights held at zero; with a `teacher`,
    distilling it at finetune.kd_weight and finetune.kd_temperature."""
    images, whole = budgeted(train, epochs, seed)
    cfg = finetune.train_params(train_cfg, epochs=whole).model_copy(update={"seed": seed})
    distill = Distillation(teacher, finetune.kd_weight, finetune.kd_temperature) if teacher else None
    label = "recovery distillation" if distill else "recovery fine-tune"
    fit_masked(model, images, cfg, masks, tolerance=tolerance, label=label, distill=distill, runtime=runtime)


def rewind_lr(
    model: nn.Module,
    train: Split,
    masks: dict[str, torch.Tensor],
    train_cfg: TrainParams,
    *,
    epochs: float,
    seed: int,
    tolerance: float,
    runtime: Runtime | None = None,
) -> None:
    """Learning-rate rewinding (Renda et al., ICLR 2020): `epochs` of training with masks held,
    at the learning rates the baseline's own schedule (train.*) used in its last `epochs`
    epochs, instead of fine-tuning's small constant-peak schedule."""
    images, whole = budgeted(train, epochs, seed)
    cfg = train_cfg.model_copy(update={"epochs": whole, "seed": seed})
    full = steps_per_epoch(len(train), train_cfg.batch_size) * planned_epochs(train_cfg)
    skipped = max(0, full - steps_per_epoch(len(images), train_cfg.batch_size) * whole)

    def schedule(step: int, total: int) -> float:
        return lr_at(skipped + step, max(full, skipped + total), train_cfg.lr, train_cfg.warmup)

    fit_masked(
        model,
        images,
        cfg,
        masks,
        tolerance=tolerance,
        label="lr rewinding",
        lr_schedule=schedule,
        runtime=runtime,
    )
