"""Controls of the comparison: what a pruning criterion must beat to mean something.

- The random floor: random masks that prune exactly as many units of each layer as the
  criterion did. A global criterion chooses per-layer ratios as well as units; the floor keeps
  the ratios and randomises the units, so "beats its floor" credits the choice of units alone,
  at the same MACs and parameter count.
- Scratch: the pruned architecture trained from a fresh init for as long as the baseline and
  its fine-tuning together (Liu et al., "Rethinking the value of network pruning", 2019).
- Learning-rate rewinding (Renda et al., 2020) is a recovery, in `recovery.rewind_lr`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from prunelab.compact import remove_zero_channels
from prunelab.coupling import coupled_channel_masks, coupled_conv_groups
from prunelab.data import Split
from prunelab.device import Runtime
from prunelab.methods import Unit
from prunelab.models import whiten_first_conv
from prunelab.params import Params
from prunelab.pruning import PruneResult, apply_masks
from prunelab.train import fit, planned_epochs


def random_floor_masks(
    model: nn.Module, result: PruneResult, unit: Unit, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Keep-masks pruning as many units of each masked tensor as `result` does, chosen at random:
    weights for an unstructured method; output channels for a channel method, the same random
    order for convs whose channels are coupled, with their BatchNorm channels."""
    if unit == "weight":
        return {name: _random_like(keep, generator) for name, keep in result.masks.items()}
    convs = {name: keep for name, keep in result.masks.items() if keep.dim() == 4}
    masks: dict[str, torch.Tensor] = {}
    for group in coupled_conv_groups(model):
        members = [f"{layer}.weight" for layer in group if f"{layer}.weight" in convs]
        if not members:
            continue
        order = torch.randperm(convs[members[0]].shape[0], generator=generator)
        for name in members:
            pruned = int((~convs[name].flatten(1).any(1)).sum())
            keep = torch.ones_like(convs[name])
            keep[order[:pruned]] = False
            masks[name] = keep
    probe = copy.deepcopy(model)
    apply_masks(probe, masks)
    return coupled_channel_masks(probe, masks)


def _random_like(keep: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    pruned = int((~keep).sum())
    out = torch.ones(keep.numel(), dtype=torch.bool)
    out[torch.randperm(keep.numel(), generator=generator)[:pruned]] = False
    return out.view_as(keep)


def train_from_scratch(
    pruned: nn.Module,
    result: PruneResult,
    unit: Unit,
    train: Split,
    params: Params,
    *,
    seed: int,
    runtime: Runtime | None = None,
) -> nn.Module:
    """A fresh init of `pruned`'s architecture (compacted for a channel method; for an
    unstructured one, the dense shapes with its masks held at zero), initialised as `train`
    initialises the baseline where the shapes allow, trained for train.epochs +
    sweep.finetune_epochs with train.* settings and `seed`."""
    model = copy.deepcopy(pruned)
    if unit == "channel":
        remove_zero_channels(model)
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    if params.train.whiten and not params.train.init and first.out_channels % 2 == 0:
        whiten_first_conv(model, train.images, frozen=params.train.whiten == "frozen")
    masks = result.masks if unit == "weight" else None
    if masks:
        apply_masks(model, masks)
    epochs = planned_epochs(params.train) + math.ceil(params.sweep.finetune_epochs)
    cfg = params.train.model_copy(update={"epochs": epochs, "seed": seed})
    fit(model, train, cfg, masks=masks, label="scratch control", runtime=runtime)
    return model
