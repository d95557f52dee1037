"""One point of the comparison sweep: prune the baseline one-shot with a method at an amount,
score it on the validation split, once per seed where the masks depend on the seed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunelab.data import Split
from prunelab.measure import mean_and_std, sparsity_report
from prunelab.params import PruneParams, SweepParams
from prunelab.predict import split_accuracy
from prunelab.prune import prune_model, resolve_method


def score_point(
    load_baseline: Callable[[], nn.Module],
    prune: PruneParams,
    sweep: SweepParams,
    method: str,
    amount: float | int,
    val: Split,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """The metrics of one sweep point; `load_baseline` gives a fresh copy of the dense model."""
    first = sweep.point(prune, method, amount, sweep.seeds[0])
    seeds = sweep.seeds if resolve_method(method).stochastic(first) else sweep.seeds[:1]
    accs = []
    for seed in seeds:
        net = load_baseline()
        result = prune_model(net, sweep.point(prune, method, amount, seed))
        accs.append(split_accuracy(net, val, batch_size=batch_size, device=device, dtype=dtype))
    mean, std = mean_and_std(accs)
    sparsity = sparsity_report(net)
    return {
        "method": method,
        "amount": amount,
        "val_acc": mean,
        "val_acc_std": std,
        "val_acc_by_seed": {str(s): round(a, 6) for s, a in zip(seeds, accs, strict=True)},
        "targeted_sparsity": result.targeted_sparsity,
        "sparsity": sparsity["sparsity"],
        "params_nonzero": sparsity["params_nonzero"],
        "params": sparsity["params"],
        "val_images": len(val),
    }
