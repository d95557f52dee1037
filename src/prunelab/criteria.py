"""Dependency-aware structured pruning with Torch-Pruning's importance criteria.

A channel is scored over its whole group (DepGraph): the conv filter, its BatchNorm channel,
the next layer's input slice, and every conv tied to it by a residual addition, which must lose
the same channels. `prune.scope: local` prunes the same fraction of every targeted group;
`global` ranks the channels of all targeted groups together (each criterion normalises within
its group), which gives non-uniform per-layer ratios. Only the masks are computed here: the
pruned model keeps its shapes until compaction removes them.

First-order Taylor (Molchanov et al., CVPR 2019) scores a channel by |w · ∂L/∂w| summed over
its group, so it needs loss gradients: the caller passes `gradients`, which fills them in from
training images (see train.loss_gradients); the other criteria look at the weights alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.utils.prune as tprune
import torch_pruning as tp
from torch import nn

from prunelab.amounts import final_count, layer_amount, step_count
from prunelab.coupling import dependency_graph
from prunelab.errors import UserError
from prunelab.params import PruneParams

Importance = Callable[[], tp.importance.Importance]
Gradients = Callable[[nn.Module], None]
"""Fills the .grad of a model's parameters with loss gradients on training images."""

CRITERIA: dict[str, tuple[Importance, str]] = {
    "group_l1": (lambda: tp.importance.GroupMagnitudeImportance(p=1), "L1 norm over the channel's group"),
    "group_l2": (lambda: tp.importance.GroupMagnitudeImportance(p=2), "L2 norm over the channel's group"),
    "group_bn_scale": (
        lambda: tp.importance.BNScaleImportance(),
        "|γ| of the channel's BatchNorm (slimming)",
    ),
    "group_lamp": (lambda: tp.importance.LAMPImportance(p=2), "LAMP score (layer-adaptive magnitude)"),
    "group_fpgm": (lambda: tp.importance.FPGMImportance(p=2), "distance to the group's geometric median"),
    "group_taylor": (
        lambda: tp.importance.GroupTaylorImportance(),
        "first-order Taylor |w·∂L/∂w| on prune.gradient_images training images",
    ),
    "group_random": (lambda: tp.importance.RandomImportance(), "random channels, grouped (the floor)"),
}


def channel_masks(
    model: nn.Module,
    targets: list[str],
    fraction: float,
    cfg: PruneParams,
    importance: tp.importance.Importance,
    gradients: Gradients | None = None,
) -> dict[str, torch.Tensor]:
    """Keep-masks (True = kept) of the weights of every conv in a group rooted at a targeted
    conv, once `fraction` of the final amount is pruned. Channels already pruned (zero filters)
    rank lowest, so steps of a gradual schedule only add to them."""
    with torch.no_grad():  # a parametrised weight is a computed tensor, which deepcopy refuses
        for module in model.modules():
            if hasattr(module, "weight_orig"):
                module.weight = module.weight_orig * module.weight_mask
    probe = copy.deepcopy(model)
    for module in probe.modules():  # DepGraph traces plain weights, not pruning parametrisations
        if hasattr(module, "weight_orig"):
            tprune.remove(module, "weight")
    if needs_gradients(importance):
        if gradients is None:
            raise UserError(
                f"prune.method = '{cfg.method}' scores channels with loss gradients on training "
                "images, which this command does not load; use another method here"
            )
        gradients(probe)  # on the probe: the masked model's gradients are those of its weights
    if isinstance(importance, tp.importance.BNScaleImportance):
        _check_scales_differ(probe, cfg.method)
    names = {module: name for name, module in probe.named_modules()}
    graph = dependency_graph(probe)
    classifier = [m for m in probe.modules() if isinstance(m, nn.Linear)]  # its outputs are classes
    scored = []
    for group in graph.get_all_groups(ignored_layers=classifier, root_module_types=[nn.Conv2d]):
        convs = [dep.target.module for dep, _ in group if dep.handler == tp.prune_conv_out_channels]
        if not any(names[c] in targets for c in convs):
            continue
        root = group[0].dep.target.module
        scores = importance(group).float()
        pruned = (root.weight.detach().flatten(1) == 0).all(1)
        scores[pruned] = -torch.inf
        # coupled convs share one amount (sensitivity derives it per group)
        amount_key = next((names[c] for c in convs if names[c] in cfg.per_layer), None)
        scored.append((root, scores, amount_key))
    counts = _counts(scored, fraction, cfg)
    masks: dict[str, torch.Tensor] = {}
    for (root, scores, _), count in zip(scored, counts, strict=True):
        drop = scores.argsort()[:count].tolist()
        for dep, idxs in graph.get_pruning_group(root, tp.prune_conv_out_channels, drop or [0]):
            if dep.handler != tp.prune_conv_out_channels:
                continue
            conv = dep.target.module
            keep = masks.setdefault(f"{names[conv]}.weight", torch.ones_like(conv.weight, dtype=torch.bool))
            if drop:
                keep[list(idxs)] = False
    return masks


def _check_scales_differ(model: nn.Module, method: str) -> None:
    scales = [m.weight.detach().flatten() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if scales and torch.cat(scales).unique().numel() == 1:
        raise UserError(
            f"prune.method = '{method}': every BatchNorm scale of this model is "
            f"{scales[0][0].item():g}, so the criterion cannot rank channels (was it trained with "
            "train.bn_scale: false, or not at all?); use another criterion, or train with "
            "train.bn_scale: true"
        )


def needs_gradients(importance: tp.importance.Importance) -> bool:
    return isinstance(importance, tp.importance.GroupTaylorImportance)


def _counts(
    scored: list[tuple[nn.Module, torch.Tensor, str | None]], fraction: float, cfg: PruneParams
) -> list[int]:
    """Channels to prune per group: the same fraction of each (local, or its prune.per_layer
    amount), or the lowest-scoring channels of all groups together (global); every group keeps
    at least one channel."""
    sizes = [len(scores) for _, scores, _ in scored]
    if cfg.scope == "local":
        return [
            step_count(fraction, *layer_amount(cfg, key), total=n, round_to=cfg.round_to)
            for (_, _, key), n in zip(scored, sizes, strict=True)
        ]
    wanted = step_count(fraction, cfg.amount, "prune.amount", total=sum(sizes))
    everything = torch.cat([scores for _, scores, _ in scored])
    owner = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    chosen = owner[everything.argsort()[:wanted]]
    counts = torch.bincount(chosen, minlength=len(sizes)).tolist()
    return [
        final_count(min(c, n - 1), n, "prune.amount", cfg.round_to)
        for c, n in zip(counts, sizes, strict=True)
    ]


def computed_once(gradients: Gradients) -> Gradients:
    """`gradients`, computed on the first model and copied onto the next ones: right where every
    model is an unpruned copy of the same weights (the trials of a one-shot search)."""
    computed: dict[str, torch.Tensor] = {}

    def fill(model: nn.Module) -> None:
        if not computed:
            gradients(model)
            computed.update({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
            return
        for name, param in model.named_parameters():
            if name in computed:
                param.grad = computed[name].clone()

    return fill
