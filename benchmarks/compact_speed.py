"""How much smaller and faster does structured pruning make the default CNN, once compacted?

For each amount, L1-structured pruning of every conv's filters, then physical compaction; params,
MACs and CPU latency at batch 1 and 128 are measured side by side in this one run, against the
dense model. Latency depends on shapes, not on weight values, so no training is needed.

    uv run python benchmarks/compact_speed.py [--amounts 0.25 0.3 0.5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import copy

import torch
from rich.console import Console
from rich.table import Table

from prunelab.compact import compact
from prunelab.measure import count_macs, latency
from prunelab.models import build_model
from prunelab.params import Params, PruneParams
from prunelab.prune import prune_model
from prunelab.train import resolve_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--amounts", type=float, nargs="+", default=[0.0, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75])
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per point")
    args = parser.parse_args()

    defaults = Params()
    dtype = resolve_precision("auto", torch.device("cpu"))
    torch.manual_seed(0)
    dense = build_model(defaults.model.arch, defaults.model.kwargs).eval()
    table = Table(
        "amount",
        "params",
        "MACs",
        "MACs ×",
        "b1 ms (IQR)",
        "b1 ×",
        "b128 ms (IQR)",
        "b128 ×",
        title=f"compacted default CNN, CPU, {torch.get_num_threads()} threads, {str(dtype).removeprefix('torch.')}",
    )
    reference: dict[int, float] = {}
    dense_macs = count_macs(dense)
    for amount in args.amounts:
        model = copy.deepcopy(dense)
        if amount > 0:
            prune_model(model, PruneParams(method="ln_structured", amount=amount, targets=["Conv2d"]))
            compact(model)
        macs = count_macs(model)
        cells = []
        for batch in (1, 128):
            timing = latency(model, batch, dtype, min_run_time=args.seconds)
            reference.setdefault(batch, timing["median_ms"])
            cells += [
                f"{timing['median_ms']:.2f} ({timing['iqr_ms']:.2f})",
                f"{reference[batch] / timing['median_ms']:.2f}",
            ]
        table.add_row(
            f"{amount:g}",
            f"{sum(p.numel() for p in model.parameters()):,}",
            f"{macs / 1e6:.1f} M",
            f"{dense_macs / macs:.2f}",
            *cells,
        )
    Console().print(table)
    Console().print(
        "reproduce: uv run python benchmarks/compact_speed.py "
        + " ".join(f"--amounts {' '.join(map(str, args.amounts))} --seconds {args.seconds}".split())
    )


if __name__ == "__main__":
    main()
