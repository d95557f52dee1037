"""What does an epoch of fine-tuning cost once the pruned channels are removed while it trains?

A fresh model (--arch: the default CNN, or resnet20 at width 16), pruned with --method (group_l2,
global) to each MACs target, fine-tuned for one pass over --images generated images with the
default finetune.* settings three ways: as the masked, dense-shaped model (the cost before
compacted fine-tuning); as its compacted twin with every zero channel removed; and as the twin
recovery.fit_masked trains, whose widths stay multiples of compact.TRAINING_WIDTH_MULTIPLE (the
zero channels it keeps stay masked). All run in this one process, one after the other, on the
same CPU threads; the ratios are what to read. Cost depends on shapes, not on the images, so no
CIFAR-10 is needed.

    uv run python benchmarks/finetune_speed.py [--arch cnn] [--method group_l2] [--targets 2 3 4]
        [--images 5120]
"""

from __future__ import annotations

import argparse
import copy

import torch
from rich.console import Console
from rich.table import Table

from prunelab.compact import TRAINING_WIDTH_MULTIPLE, compact_form, compacted_macs
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
    parser.add_argument("--arch", choices=["cnn", "resnet20"], default="cnn")
    parser.add_argument("--method", default="group_l2", help="a channel method of the registry")
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
    kwargs = params.model.kwargs if args.arch == params.model.arch else {}  # resnet20: width 16
    dense = build_model(args.arch, kwargs).eval()
    info = provenance(device, dtype, None)
    rounded = f"twin, widths ×{TRAINING_WIDTH_MULTIPLE}"
    table = Table(
        "MACs ×",
        "masked s",
        "twin s",
        f"{rounded} s",
        "twin speed-up",
        f"{rounded} speed-up",
        title=f"{args.arch}, {args.method}: one fine-tuning pass over {args.images} images: {info['cpu']} "
        f"({info['cpu_flags']}), {info['threads']} threads, {dtype_name(dtype)}",
    )
    for target in args.targets:
        prune = params.sweep.prune_params(params.prune, args.method, 0.0, 0)
        amount = amount_for_cost(dense, prune, target, f"--targets {target}")
        net = copy.deepcopy(dense)
        result = prune_model(net, prune.model_copy(update={"amount": amount}))
        macs = count_macs(dense) / compacted_macs(net)
        seconds = [
            fit(copy.deepcopy(net), data, cfg, masks=result.masks, label=f"{target}x masked")[0].seconds
        ]
        for multiple in (1, TRAINING_WIDTH_MULTIPLE):
            form = compact_form(
                copy.deepcopy(net), result.masks, data.images[:64], params.compact.tolerance, multiple
            )
            model, masks = (form.model, form.masks) if form else (copy.deepcopy(net), result.masks)
            seconds.append(fit(model, data, cfg, masks=masks, label=f"{target}x twin ×{multiple}")[0].seconds)
        table.add_row(
            f"{macs:.2f}",
            *(f"{s:.1f}" for s in seconds),
            *(f"{seconds[0] / s:.2f}×" for s in seconds[1:]),
        )
    Console().print(table)
    Console().print(
        "command: uv run python benchmarks/finetune_speed.py "
        + f"--arch {args.arch} --method {args.method} --targets {' '.join(map(str, args.targets))} "
        + f"--images {args.images}"
    )


if __name__ == "__main__":
    main()
