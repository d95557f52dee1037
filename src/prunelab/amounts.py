"""Amounts to exact counts, and the schedule of gradual pruning: the arithmetic every pruning
method shares, so the final fraction is exact relative to the dense model however many steps
reach it."""

from __future__ import annotations

from prunelab.errors import UserError
from prunelab.params import PruneParams


def final_count(amount: float | int, total: int, key: str, round_to: int = 1) -> int:
    """Units to prune; with `round_to` > 1 the units kept are rounded to a multiple of it."""
    if isinstance(amount, int):
        if amount > total:
            raise UserError(f"{key} = {amount}: more than the {total} units that can be pruned")
        count = amount
    else:
        count = round(amount * total)
    if round_to > 1 and total > round_to:
        kept = min(total, max(round_to, round((total - count) / round_to) * round_to))
        count = total - kept
    return count


def layer_amount(cfg: PruneParams, layer: str | None) -> tuple[float | int, str]:
    """The amount `layer` is pruned to (its prune.per_layer entry, else prune.amount) and the
    key that set it, for error messages."""
    if layer is not None and layer in cfg.per_layer:
        return cfg.per_layer[layer], f"prune.per_layer.{layer}"
    return cfg.amount, "prune.amount"


def step_count(fraction: float, amount: float | int, key: str, *, total: int, round_to: int = 1) -> int:
    """Units pruned once `fraction` of the schedule is done: that fraction of the final count,
    so every step counts from the dense model."""
    return round(fraction * final_count(amount, total, key, round_to))


def step_fractions(steps: int, schedule: str = "iterative") -> list[float]:
    """Cumulative fraction of the final amount reached after each step.

    iterative: equal increments; agp: Zhu & Gupta's cubic s_t = s_f (1 − (1 − t/n)^3).
    """
    if schedule == "agp":
        return [1 - (1 - k / steps) ** 3 for k in range(1, steps + 1)]
    return [k / steps for k in range(1, steps + 1)]
