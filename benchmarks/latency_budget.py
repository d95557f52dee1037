"""How long must latency be measured for a speed-up to hold? evaluate.latency_seconds is what
evaluate and every sweep point spend per model and batch size; this measures the same speed-ups
again and again at several budgets, the budgets interleaved so that drift falls on all alike,
and prints how much each speed-up varies between repeats, and what one measurement costs.

Latency depends on shapes, not on weight values, so the models are untrained: the default CNN,
dense, against its compacted form after L1-structured pruning of conv1's filters (the seed
experiment, a small speed-up) and of every conv's (about 2× fewer MACs).

    uv run python benchmarks/latency_budget.py [--budgets 0.25 0.5 1.0] [--repeats 6]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from train_speed import default_model

from prunelab.compact import remove_zero_channels
from prunelab.device import cpu_description, dtype_name, resolve_device, resolve_precision
from prunelab.measure import compare_latency, count_macs, mean_and_std, speedups
from prunelab.params import Params, PruneParams
from prunelab.pruning import prune_model


def compacted(dense: torch.nn.Module, targets: list[str], amount: float) -> torch.nn.Module:
    model = copy.deepcopy(dense)
    prune_model(model, PruneParams(method="ln_structured", amount=amount, targets=targets))
    remove_zero_channels(model)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batches", type=int, nargs="+", default=Params().evaluate.latency_batch_sizes)
    args = parser.parse_args()
    device = resolve_device("cpu")
    dtype = resolve_precision("auto", device)
    dense = default_model().eval()
    models = {
        "conv1 40 %": compacted(dense, ["conv1"], 0.4),
        "every conv 30 %": compacted(dense, ["Conv2d"], 0.3),
    }
    # {(model, batch, budget): [speed-up of each repeat]}, {budget: [seconds of each measurement]}
    found: dict[tuple[str, int, float], list[float]] = {}
    cost: dict[float, list[float]] = {b: [] for b in args.budgets}
    for _ in range(args.repeats):
        for budget in args.budgets:
            for name, small in models.items():
                for batch in args.batches:
                    start = time.perf_counter()
                    timing = compare_latency(
                        {"dense": dense, "small": small}, batch, dtype, budget, device=device
                    )
                    cost[budget].append(time.perf_counter() - start)
                    ratio = speedups({k: t["median_ms"] for k, t in timing.items()}, "dense")["small"]
                    found.setdefault((name, batch, budget), []).append(ratio)
    print(
        f"CPU: {cpu_description()}; {dtype_name(dtype)}; torch threads {torch.get_num_threads()}; "
        f"{args.repeats} repeats of each budget, interleaved"
    )
    print(f"{'model (MACs ×)':<26}{'batch':>6}{'budget s':>10}{'speed-up mean':>15}{'std':>8}{'min–max':>15}")
    for (name, batch, budget), ratios in found.items():
        macs = count_macs(dense) / count_macs(models[name])
        mean, std = mean_and_std(ratios)
        print(
            f"{f'{name} ({macs:.2f}×)':<26}{batch:>6}{budget:>10}{mean:>15.3f}"
            f"{std:>8.3f}{f'{min(ratios):.3f}–{max(ratios):.3f}':>15}"
        )
    for budget, seconds in cost.items():
        print(f"budget {budget} s: one measurement of two models takes {statistics.fmean(seconds):.2f} s")
    print(
        "reproduce: uv run python benchmarks/latency_budget.py "
        + " ".join([f"--budgets {' '.join(map(str, args.budgets))}", f"--repeats {args.repeats}"])
    )


if __name__ == "__main__":
    main()
