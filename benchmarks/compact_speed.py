"""How much smaller and faster does structured pruning make the default CNN, once compacted?

For each amount (and each MACs-reduction target, whose amount prune searches), L1-structured
pruning of every conv's filters, kept channel counts rounded to each --round-to, then physical
compaction; params, MACs and latency (CPU, or a GPU with --device cuda) at batch 1 and 128 are measured side by side in this one
run, against the dense model. Latency depends on shapes, not on weight values, so no training is
needed.

    uv run python benchmarks/compact_speed.py [--amounts 0.25 0.3 0.5] [--macs-reductions 0.5]
                                              [--round-to 1 16] [--seconds 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy

import torch
from rich.console import Console
from rich.table import Table

from prunelab.compact import remove_zero_channels
from prunelab.cost_search import amount_for_macs_reduction
from prunelab.device import device_description, dtype_name, resolve_device, resolve_precision
from prunelab.measure import compare_latency, count_macs
from prunelab.models import build_model
from prunelab.params import Params, PruneParams
from prunelab.pruning import prune_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--amounts", type=float, nargs="*", default=[0.25, 0.3, 0.5, 0.75])
    parser.add_argument("--macs-reductions", type=float, nargs="*", default=[0.5])
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per point")
    parser.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where latency is measured"
    )
    args = parser.parse_args()

    defaults = Params()
    device = resolve_device(args.device)
    dtype = resolve_precision("auto", device)
    torch.manual_seed(0)
    dense = build_model(defaults.model.arch, defaults.model.kwargs).eval()
    table = Table(
        "target",
        "round_to",
        "amount",
        "params",
        "MACs",
        "MACs ×",
        "b1 ms (IQR)",
        "b1 ×",
        "b128 ms (IQR)",
        "b128 ×",
        title=f"compacted default CNN, {device_description(device)}, {torch.get_num_threads()} CPU threads, "
        f"{dtype_name(dtype)}",
    )
    dense_macs = count_macs(dense)
    points = [("dense", 1, None, 0.0)]
    for round_to in args.round_to:
        points += [(f"amount {a:g}", round_to, None, a) for a in args.amounts if a > 0]
        points += [(f"MACs −{r:.0%}", round_to, r, 0.0) for r in args.macs_reductions]
    models, amounts = {}, {}
    for label, round_to, reduction, amount in points:
        model = copy.deepcopy(dense)
        if label != "dense":
            cfg = PruneParams(round_to=round_to).one_shot("ln_structured", amount, ["Conv2d"])
            if reduction is not None:
                searched = cfg.model_copy(update={"macs_reduction": reduction})
                amount = amount_for_macs_reduction(model, searched)
            prune_model(model, cfg.one_shot(cfg.method, amount, cfg.targets))
            remove_zero_channels(model)
        models[(label, round_to)], amounts[(label, round_to)] = model, amount
    # interleaved rounds: machine drift falls on every point alike
    timings = {b: compare_latency(models, b, dtype, args.seconds, device=device) for b in (1, 128)}
    for key, model in models.items():
        macs = count_macs(model)
        cells = []
        for batch in (1, 128):
            timing, reference = timings[batch][key], timings[batch][("dense", 1)]
            cells += [
                f"{timing['median_ms']:.2f} ({timing['iqr_ms']:.2f})",
                f"{reference['median_ms'] / timing['median_ms']:.2f}",
            ]
        table.add_row(
            key[0],
            str(key[1]),
            f"{amounts[key]:.4g}",
            f"{sum(p.numel() for p in model.parameters()):,}",
            f"{macs / 1e6:.1f} M",
            f"{dense_macs / macs:.2f}",
            *cells,
        )
    Console(width=160).print(table)
    Console().print(
        "reproduce: uv run python benchmarks/compact_speed.py "
        + f"--amounts {' '.join(map(str, args.amounts))} "
        + f"--macs-reductions {' '.join(map(str, args.macs_reductions))} "
        + f"--round-to {' '.join(map(str, args.round_to))} --seconds {args.seconds} --device {args.device}"
    )


if __name__ == "__main__":
    main()
