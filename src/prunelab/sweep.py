"""One point of the comparison sweep: prune the baseline one-shot with a method at an amount,
then score it on the validation split after each recovery (sweep.recovery), once per seed
where the result depends on the seed, and record what the point costs: compression ratio, the
MACs of the compacted model, and its latency speed-up measured against the dense model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunelab.compact import compact
from prunelab.data import Split
from prunelab.measure import compare_latency, count_macs, mean_and_std, sparsity_report, speedups
from prunelab.params import Params
from prunelab.predict import split_accuracy
from prunelab.prune import prune_model, resolve_method
from prunelab.recovery import fine_tune, recalibrate_batchnorm


def score_point(
    load_baseline: Callable[[], nn.Module],
    params: Params,
    method: str,
    amount: float | int,
    train: Split,
    val: Split,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """The metrics of one sweep point; `load_baseline` gives a fresh copy of the dense model,
    `train` is the training split (recalibration, fine-tuning), `val` the images scored."""
    sweep, batch_size = params.sweep, params.evaluate.batch_size
    pruning = resolve_method(method)
    stochastic = pruning.stochastic(sweep.point(params.prune, method, amount, sweep.seeds[0]))
    # Fine-tuning depends on its seed whatever the masks do; one-shot scores of a deterministic
    # method do not, and are taken once.
    seeds = sweep.seeds if stochastic or "finetune" in sweep.recovery else sweep.seeds[:1]

    def score(net: nn.Module) -> float:
        return split_accuracy(net, val, batch_size=batch_size, device=device, dtype=dtype)

    accs: dict[str, dict[int, float]] = {recovery: {} for recovery in sweep.recovery}
    for seed in seeds:
        net = load_baseline()
        result = prune_model(net, sweep.point(params.prune, method, amount, seed))
        if stochastic or seed == seeds[0]:
            if "none" in accs:
                accs["none"][seed] = score(net)
            if "bn_recalibration" in accs:
                recalibrated = copy.deepcopy(net)
                images = train.images[: sweep.recalibration_images]
                recalibrate_batchnorm(recalibrated, images, batch_size=batch_size, device=device, dtype=dtype)
                accs["bn_recalibration"][seed] = score(recalibrated)
        if "finetune" in accs:
            tuned = copy.deepcopy(net)
            fine_tune(
                tuned,
                train,
                result.masks,
                params.train,
                params.finetune,
                epochs=sweep.finetune_epochs,
                seed=params.finetune.seed + seed,
            )
            accs["finetune"][seed] = score(tuned)
    sparsity = sparsity_report(net)
    dense = load_baseline()
    macs = count_macs(dense)
    # Only whole output channels can be removed; zeros inside dense tensors save no MACs.
    small = copy.deepcopy(net)
    if pruning.unit == "channel" and params.prune.dim == 0:
        compact(small)
    macs_compact = count_macs(small)
    return {
        "method": method,
        "amount": amount,
        "targeted_sparsity": result.targeted_sparsity,
        "sparsity": sparsity["sparsity"],
        "params_nonzero": sparsity["params_nonzero"],
        "params": sparsity["params"],
        "compression": round(sparsity["params"] / max(1, sparsity["params_nonzero"]), 4),
        "macs": macs,
        "macs_compact": macs_compact,
        "macs_speedup": round(macs / max(1, macs_compact), 4),
        **measured_speedups(dense, small, params, dtype, device, removed=macs_compact < macs),
        "val_images": len(val),
        "recovery": {recovery: _summary(by_seed) for recovery, by_seed in accs.items()},
    }


def measured_speedups(
    dense: nn.Module,
    small: nn.Module,
    params: Params,
    dtype: torch.dtype,
    device: torch.device,
    *,
    removed: bool,
) -> dict[str, float]:
    """Latency of the dense model over that of the compacted one at each
    evaluate.latency_batch_sizes, measured in interleaved rounds on `device`. A model that lost
    no whole channel has the dense shapes, and its speed-up is 1 without measuring."""
    batches = params.evaluate.latency_batch_sizes
    if not removed:
        return {f"latency_speedup_b{b}": 1.0 for b in batches}
    out = {}
    for batch in batches:
        timing = compare_latency(
            {"dense": dense, "compact": small}, batch, dtype, params.evaluate.latency_seconds, device=device
        )
        out[f"latency_speedup_b{batch}"] = speedups({k: t["median_ms"] for k, t in timing.items()}, "dense")[
            "compact"
        ]
    return out


def _summary(by_seed: dict[int, float]) -> dict[str, Any]:
    mean, std = mean_and_std(list(by_seed.values()))
    return {
        "val_acc": mean,
        "val_acc_std": std,
        "val_acc_by_seed": {str(seed): round(acc, 6) for seed, acc in by_seed.items()},
    }
