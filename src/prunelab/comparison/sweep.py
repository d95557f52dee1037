"""One point of the comparison sweep: prune the baseline one-shot with a method at an amount, or
at the amount that meets a cost target, then score it on the validation split after each
recovery (sweep.recovery), once per seed where the result depends on the seed, with its random
floor (controls.py) beside it; and record what the point costs: compression ratio, the MACs of
the compacted model, and its latency speed-up measured against the dense model. Each score keeps
which images it got right (per_image.py); the dense model is scored once on the same images
(commands/dense.py), so the report can compare any two of them image by image."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from prunelab.compact import compacted_copy, remove_zero_channels
from prunelab.comparison.controls import random_floor_masks, train_from_scratch
from prunelab.comparison.recovery import fine_tune, recalibrate_batchnorm, rewind_lr
from prunelab.cost_search import amount_for_cost
from prunelab.criteria import Gradients, computed_once
from prunelab.data import Split
from prunelab.device import Runtime
from prunelab.measure import compare_latency, count_macs, mean_and_std, sparsity_report, speedups
from prunelab.methods import PruningMethod, Unit, resolve_method
from prunelab.onnx_runtime import onnx_latency, onnx_sessions
from prunelab.params import Params, cost_target
from prunelab.per_image import encode
from prunelab.predict import split_correct
from prunelab.pruning import PruneResult, apply_masks, prune_model
from prunelab.train import loss_gradients

TRAINED = ("finetune", "distill", "lr_rewind", "scratch")
"""Recoveries that train, and so depend on their seed whatever the masks do."""


class Scores(NamedTuple):
    """What scoring a sweep point (or the dense reference) gives: its metrics, and which
    validation images each of its scores got right ({recovery: {seed: encoded}}, per_image.py)."""

    metrics: dict[str, Any]
    correct: dict[str, Any]


def point_amount(
    baseline: nn.Module,
    params: Params,
    method: str,
    point: float | int | str,
    gradients: Gradients | None = None,
    pruning: PruningMethod | None = None,
) -> float | int:
    """The amount of a sweep point: as written, or searched to meet its cost target (`pruning`:
    `method` already resolved)."""
    ratio = cost_target(point)
    if ratio is None:
        return point  # type: ignore[return-value]  # an amount, validated by the schema
    cfg = params.sweep.prune_params(params.prune, method, 0.0, params.sweep.seeds[0])
    return amount_for_cost(baseline, cfg, ratio, f"sweep.points {point} ({method})", gradients, pruning)


def score_point(
    load_baseline: Callable[[], nn.Module],
    params: Params,
    method: str,
    point: float | int | str,
    train: Split,
    val: Split,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Scores:
    """The scores of one sweep point; `load_baseline` gives a fresh copy of the dense model,
    `train` is the training split (recalibration, training recoveries), `val` the images scored."""
    sweep = params.sweep
    pruning = resolve_method(method)
    # Every pruning here is one-shot from the same baseline: gradients are computed once.
    gradients = computed_once(
        loss_gradients(
            train,
            params.prune.gradient_images,
            batch_size=params.evaluate.batch_size,
            device=device,
            dtype=dtype,
        )
    )
    amount = point_amount(load_baseline(), params, method, point, gradients, pruning)
    stochastic = pruning.stochastic(sweep.prune_params(params.prune, method, amount, sweep.seeds[0]))
    with_floor = sweep.random_floor and not stochastic
    # One-shot and recalibrated scores of a deterministic method do not depend on the seed and
    # are taken once; masks drawn at random, and training, are repeated over sweep.seeds.
    repeated = stochastic or with_floor or any(r in TRAINED for r in sweep.recovery)
    seeds = sweep.seeds if repeated else sweep.seeds[:1]

    channels = pruning.removes_channels(params.prune)

    def score(net: nn.Module) -> torch.Tensor:
        # pruned channels cost nothing in the compacted form, which computes the same function
        small = compacted_copy(net, val.images[:64], params.compact.tolerance, device) if channels else None
        return split_correct(
            small or net, val, batch_size=params.evaluate.batch_size, device=device, dtype=dtype
        )

    def recovered(
        net: nn.Module, result: PruneResult, recoveries: list[str], seed: int
    ) -> dict[str, torch.Tensor]:
        # Untrained recoveries start from the compacted form, compacted once (the same function
        # for fewer MACs); training recoveries need the dense-shaped net and its masks.
        untrained = channels and any(r not in TRAINED for r in recoveries)
        small = compacted_copy(net, val.images[:64], params.compact.tolerance, device) if untrained else None
        start = {r: net if r in TRAINED else small or net for r in recoveries}
        return {
            r: score(
                recover(start[r], result, pruning.unit, r, params, train, seed, device, dtype, load_baseline)
            )
            for r in recoveries
        }

    accs: dict[str, dict[int, torch.Tensor]] = {recovery: {} for recovery in sweep.recovery}
    floor_recoveries = [r for r in sweep.recovery if r != "scratch"]  # the same architecture
    floor: dict[str, dict[int, torch.Tensor]] = {recovery: {} for recovery in floor_recoveries}
    trained_seeds = sweep.seeds[: sweep.trained_seeds]  # training costs minutes a seed

    def wanted(recoveries: list[str], seed: int, untrained: bool) -> list[str]:
        return [r for r in recoveries if (seed in trained_seeds if r in TRAINED else untrained)]

    for seed in seeds:
        if stochastic or seed == seeds[0]:  # a deterministic method's masks are the same each seed
            net = load_baseline()
            result = prune_model(
                net,
                sweep.prune_params(params.prune, method, amount, seed),
                gradients=gradients,
                method=pruning,
            )
        once = stochastic or seed == seeds[0]
        for recovery, acc in recovered(net, result, wanted(sweep.recovery, seed, once), seed).items():
            accs[recovery][seed] = acc
        if with_floor:
            control = load_baseline()
            masks = random_floor_masks(control, result, pruning.unit, torch.Generator().manual_seed(seed))
            apply_masks(control, masks)
            floor_result = PruneResult(masks=masks, targeted=result.targeted)
            for recovery, acc in recovered(
                control, floor_result, wanted(floor_recoveries, seed, True), seed
            ).items():
                floor[recovery][seed] = acc
    sparsity = sparsity_report(net)
    dense = load_baseline()
    macs = count_macs(dense)
    # Only whole output channels can be removed; zeros inside dense tensors save no MACs.
    small = copy.deepcopy(net)
    if channels:
        remove_zero_channels(small)
    macs_compact = count_macs(small)
    metrics = {
        "method": method,
        "point": point,
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
        "random_floor": {recovery: _summary(by_seed) for recovery, by_seed in floor.items()}
        if with_floor
        else {},
    }
    correct = {
        "images": len(val),
        "recovery": _encoded(accs),
        "random_floor": _encoded(floor) if with_floor else {},
    }
    return Scores(metrics, correct)


def recover(
    net: nn.Module,
    result: PruneResult,
    unit: Unit,
    recovery: str,
    params: Params,
    train: Split,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    load_baseline: Callable[[], nn.Module],
) -> nn.Module:
    """A copy of the pruned `net` after `recovery` (sweep.recovery); `net` is left as it is.
    `load_baseline` gives the dense model, the teacher of `distill`."""
    sweep = params.sweep
    runtime = Runtime(device, dtype)
    if recovery == "scratch":
        return train_from_scratch(
            net, result, unit, train, params, seed=params.train.seed + seed, runtime=runtime
        )
    model = copy.deepcopy(net)
    if recovery == "bn_recalibration":
        images = train.images[: sweep.recalibration_images]
        recalibrate_batchnorm(
            model, images, batch_size=params.evaluate.batch_size, device=device, dtype=dtype
        )
    elif recovery in ("finetune", "distill"):
        fine_tune(
            model,
            train,
            result.masks,
            params.train,
            params.finetune,
            epochs=sweep.finetune_epochs,
            seed=params.finetune.seed + seed,
            tolerance=params.compact.tolerance,
            teacher=load_baseline() if recovery == "distill" else None,
            runtime=runtime,
        )
    elif recovery == "lr_rewind":
        rewind_lr(
            model,
            train,
            result.masks,
            params.train,
            epochs=sweep.finetune_epochs,
            seed=params.finetune.seed + seed,
            tolerance=params.compact.tolerance,
            runtime=runtime,
        )
    return model


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
    evaluate.latency_batch_sizes, measured in interleaved rounds on `device` in eager PyTorch,
    and on the CPU in onnxruntime (`onnx_`). A model that lost no whole channel has the dense
    shapes, and its speed-up is 1 without measuring."""
    batches = params.evaluate.latency_batch_sizes
    if not removed:
        return {f"{p}latency_speedup_b{b}": 1.0 for b in batches for p in ("", "onnx_")}
    out = {}
    pair = {"dense": dense, "compact": small}
    sessions = onnx_sessions(pair)  # exported once, timed at every batch size
    for batch in batches:
        timings = {
            "": compare_latency(pair, batch, dtype, params.evaluate.latency_seconds, device=device),
            "onnx_": onnx_latency(sessions, batch, params.evaluate.latency_seconds),
        }
        for prefix, timing in timings.items():
            ms = {k: t["median_ms"] for k, t in timing.items()}
            out[f"{prefix}latency_speedup_b{batch}"] = speedups(ms, "dense")["compact"]
    return out


def _summary(by_seed: dict[int, torch.Tensor]) -> dict[str, Any]:
    accs = {seed: correct.float().mean().item() for seed, correct in by_seed.items()}
    mean, std = mean_and_std(list(accs.values()))
    return {
        "val_acc": mean,
        "val_acc_std": std,
        "val_acc_by_seed": {str(seed): round(acc, 6) for seed, acc in accs.items()},
    }


def _encoded(by_recovery: dict[str, dict[int, torch.Tensor]]) -> dict[str, dict[str, str]]:
    return {
        recovery: {str(seed): encode(correct.numpy()) for seed, correct in by_seed.items()}
        for recovery, by_seed in by_recovery.items()
    }
