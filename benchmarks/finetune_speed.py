"""What does an epoch of fine-tuning cost once the pruned channels are removed while it trains?

The default CNN, pruned with group_l2 (global) to each MACs target, fine-tuned for one pass over
--images generated images with the default finetune.* settings: once as the masked, dense-shaped
model (the cost before compacted fine-tuning) and once through recovery.fit_masked, which trains
the compacted twin. Both run in this one process, one after the other, on the same CPU threads;
the ratio is what to read. Cost depends on shapes, not on the images, so no CIFAR-10 is needed.

    uv run python benchmarks/finetune_speed.py [--targets 2 3 4] [--images 5120]
"""

from __future__ import annotations

import argparse
import copy

import torch
from rich.console import Console
from rich.table import Table

from prunelab.compact import compacted_macs
from prunelab.comparison.recovery import fit_masked
from prunelab.cost_search import amount_for_cost
from prunelab.data import Split
from prunelab.device import dtype_name, resolve_runtime
from prunelab.measure import count_macs
from prunelab.models import build_model
from prunelab.params import Params
from prunelab.provenance import provenance
from prunelab.pruning import prune_model
from prunelab.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--targets", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    parser.add_argument("--images", type=int, default=5120, help="images in the timed pass")
    args = parser.parse_args()

    params = Params()
    device, dtype = resolve_runtime(params.train.device, params.train.precision)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    data = Split(images, torch.randint(0, 10, (args.images,), generator=generator))
    cfg = params.finetune.train_params(params.train, epochs=1).model_copy(update={"val_every": 0})
    torch.manual_seed(0)
    dense = build_model(params.model.arch, params.model.kwargs).eval()
    info = provenance(device, dtype, None)
    table = Table(
        "MACs ×",
        "masked s",
        "compacted s",
        "speed-up",
        title=f"one fine-tuning pass over {args.images} images: {info['cpu']} ({info['cpu_flags']}), "
        f"{info['threads']} threads, {dtype_name(dtype)}",
    )
    for target in args.targets:
        prune = params.sweep.prune_params(params.prune, "group_l2", 0.0, 0)
        amount = amount_for_cost(dense, prune, target, f"--targets {target}")
        net = copy.deepcopy(dense)
        result = prune_model(net, prune.model_copy(update={"amount": amount}))
        macs = count_macs(dense) / compacted_macs(net)
        masked = fit(copy.deepcopy(net), data, cfg, masks=result.masks, label=f"{target}x masked")
        small = fit_masked(
            copy.deepcopy(net),
            data,
            cfg,
            result.masks,
            tolerance=params.compact.tolerance,
            label=f"{target}x",
        )
        seconds = masked[0].seconds, small[0].seconds
        table.add_row(
            f"{macs:.2f}", f"{seconds[0]:.1f}", f"{seconds[1]:.1f}", f"{seconds[0] / seconds[1]:.2f}×"
        )
    Console().print(table)
    Console().print(
        "command: uv run python benchmarks/finetune_speed.py "
        + " ".join(["--targets", *map(str, args.targets), "--images", str(args.images)])
    )


if __name__ == "__main__":
    main()
