"""Which channel rounding (`prune.round_to`) does the speed-up need, in eager PyTorch and in
onnxruntime?

The baseline (models/baseline.pt, or a fresh default CNN with --fresh) is pruned with a channel
method to each MACs target, once per round_to (every layer keeps a multiple of it, the amount
searched again so the MACs target still holds), and compacted. Every compact model and the dense
one are then timed in interleaved rounds in one process, at batch 1 and 128: eager PyTorch at
this machine's precision (channels_last) and the ONNX export in onnxruntime (fp32, the same
threads). Read the speed-ups within one runtime and one batch; the IQR says how far one run
spreads.

    uv run python benchmarks/round_to.py [--targets 2 3 4] [--round-to 1 8 16 32]
        [--method group_l2] [--scope global] [--seconds 1.0] [--fresh]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from common import ROOT
from rich.console import Console
from rich.table import Table

from prunelab.checkpoints import load_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.compact import remove_zero_channels
from prunelab.cost_search import amount_for_cost
from prunelab.device import CPU, dtype_name, resolve_precision
from prunelab.measure import compare_latency, count_macs
from prunelab.models import build_model
from prunelab.onnx_runtime import compare_onnx_latency
from prunelab.params import Params
from prunelab.provenance import provenance
from prunelab.pruning import prune_model

BATCHES = (1, 128)


def compact_models(
    dense: torch.nn.Module,
    params: Params,
    method: str,
    scope: str,
    targets: list[float],
    round_tos: list[int],
) -> dict[tuple[float, int], tuple[torch.nn.Module, float]]:
    """{(target, round_to): (compacted model, MACs reduction reached)}."""
    models = {}
    for target in targets:
        for round_to in round_tos:
            cfg = params.sweep.prune_params(params.prune, method, 0.0, 0).model_copy(
                update={"round_to": round_to, "scope": scope}
            )
            amount = amount_for_cost(dense, cfg, target, f"--targets {target}, --round-to {round_to}")
            net = copy.deepcopy(dense)
            prune_model(net, cfg.model_copy(update={"amount": amount}))
            remove_zero_channels(net)
            models[(target, round_to)] = (net.eval(), count_macs(dense) / count_macs(net))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--method", default="group_l2")
    parser.add_argument("--scope", default="global", choices=["local", "global"])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing a model and batch, in all")
    parser.add_argument("--fresh", action="store_true", help="a fresh default CNN, not models/baseline.pt")
    args = parser.parse_args()

    params = Params()
    dtype = resolve_precision(params.train.precision, CPU)
    baseline = ROOT / "models/baseline.pt"
    if args.fresh or not baseline.exists():
        torch.manual_seed(0)
        dense, source = build_model(params.model.arch, params.model.kwargs), "a fresh default CNN"
    else:
        dense, source = load_model(load_checkpoint(baseline), str(baseline)), str(Path("models/baseline.pt"))
    dense.eval()
    models = compact_models(dense, params, args.method, args.scope, args.targets, args.round_to)
    timed = {"dense": dense, **{key: model for key, (model, _) in models.items()}}
    runtimes = {
        f"eager {dtype_name(dtype)}": lambda batch: compare_latency(timed, batch, dtype, args.seconds),
        "onnxruntime fp32": lambda batch: compare_onnx_latency(timed, batch, args.seconds),
    }
    info = provenance(CPU, dtype, None)
    table = Table("MACs target", "round_to", "MACs ×", title=f"{args.method} ({args.scope}) on {source}")
    columns = []
    for runtime, measure in runtimes.items():
        for batch in BATCHES:
            latency = measure(batch)
            dense_ms = latency["dense"]["median_ms"]
            columns.append(
                {
                    key: f"{dense_ms / latency[key]['median_ms']:.2f}× (IQR {latency[key]['iqr_ms']:.2f} ms)"
                    for key in models
                }
            )
            table.add_column(f"{runtime} b{batch} (dense {dense_ms:.2f} ms)")
    for key, (_, reached) in models.items():
        table.add_row(f"{key[0]:g}×", str(key[1]), f"{reached:.2f}", *(column[key] for column in columns))
    console = Console(width=200)
    console.print(table)
    console.print(f"{info['cpu']} ({info['cpu_flags']}), {info['threads']} threads")
    flags = ["--targets", *map(str, args.targets), "--round-to", *map(str, args.round_to)]
    flags += ["--method", args.method, "--scope", args.scope, "--seconds", str(args.seconds)]
    console.print(
        "command: uv run python benchmarks/round_to.py " + " ".join(flags + ["--fresh"] * args.fresh)
    )


if __name__ == "__main__":
    main()
