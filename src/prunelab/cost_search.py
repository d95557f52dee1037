"""The cost search: the amount at which a pruning meets a cost target (fewer MACs once compacted,
or compression), by bisection over trial prunings of copies."""

from __future__ import annotations

import copy

from torch import nn

from prunelab.compact import compacted_macs
from prunelab.criteria import Gradients, computed_once
from prunelab.errors import UserError
from prunelab.methods import PruningMethod, resolve_method
from prunelab.params import PruneParams
from prunelab.pruning import prune_model


def amount_for_macs_reduction(
    model: nn.Module,
    cfg: PruneParams,
    gradients: Gradients | None = None,
    method: PruningMethod | None = None,
) -> float:
    """The smallest uniform amount (to 1/1024) at which `model`, pruned as `cfg` says and
    compacted, keeps at most (1 − cfg.macs_reduction) of its MACs."""
    if cfg.macs_reduction is None:
        raise ValueError("cfg.macs_reduction is not set")
    return amount_for_cost(
        model,
        cfg,
        1 / (1 - cfg.macs_reduction),
        f"prune.macs_reduction = {cfg.macs_reduction}",
        gradients,
        method,
    )


def amount_for_cost(
    model: nn.Module,
    cfg: PruneParams,
    ratio: float,
    key: str,
    gradients: Gradients | None = None,
    method: PruningMethod | None = None,
) -> float:
    """The smallest amount (to 1/1024) at which `model`, pruned as `cfg` says, is `ratio` times
    cheaper: fewer MACs once compacted for a method that removes output channels, compression
    (params / nonzero params) for an unstructured one. Both grow with the amount (per-layer
    counts only grow), so bisection finds it. `key` names the setting in errors; `gradients`
    and `method` as for prune_model (the method resolved once, not per trial)."""
    method = method or resolve_method(cfg.method)
    channels = method.removes_channels(cfg)
    if method.unit == "channel" and not channels:
        raise UserError(
            f"{key}: a cost target needs whole output channels removed; '{cfg.method}' with "
            f"prune.dim = {cfg.dim} removes none. Set prune.dim: 0 or give an amount"
        )
    what = "fewer MACs once compacted" if channels else "compression (params / nonzero)"

    def cost(m: nn.Module) -> int:
        if channels:
            return compacted_macs(m)
        return sum(int(p.count_nonzero()) for p in m.parameters())

    dense = cost(model)

    gradients = computed_once(gradients) if gradients is not None else None

    def ratio_at(amount: float) -> float:
        trial = copy.deepcopy(model)
        prune_model(
            trial,
            cfg.one_shot(cfg.method, amount, cfg.targets, exclude=cfg.exclude),
            gradients=gradients,
            method=method,
        )
        return dense / max(1, cost(trial))

    lo, hi = 0.0, 0.9 if channels else 0.999  # beyond 0.9 small layers lose every channel
    if (reached := ratio_at(hi)) < ratio:
        raise UserError(
            f"{key}: even amount {hi} of {cfg.method} on the targets gives only {reached:.2f}× "
            f"{what}, not {ratio:g}×; target more layers or ask for less"
        )
    while hi - lo > 1 / 1024:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ratio_at(mid) >= ratio else (mid, hi)
    return hi
