"""Does a model train with a recipe? Short runs on a subset, before hours of a full run.

Each recipe trains the model from the train stage's init for a few epochs on the first
--images of the stages' training split (data.val_size, data.split_seed of params.yaml) and is
scored on the first --val images of the validation hold-out. It ranks recipes quickly, it does
not predict a full run's accuracy. The check that chose resnet20's `train.lr` for the full study:

    uv run python experiments/recipe_check.py --arch resnet20 --kwargs '{width: 16}' \\
        '' bias_lr_scale=1 lr=0.2,bias_lr_scale=1 lr=0.1 lr=0.1,bias_lr_scale=8 lr=0.05

(a RECIPE is train.* overrides, comma-separated; '' is params.yaml's train as it is).
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from prunelab.captions import counted
from prunelab.data import Split, train_and_validation
from prunelab.device import resolve_runtime
from prunelab.errors import UserError
from prunelab.models import build_model, whiten_first_conv
from prunelab.params import ParamsError, load_params, parse_params
from prunelab.predict import split_correct
from prunelab.provenance import provenance
from prunelab.train import fit


def overrides(recipe: str) -> dict:
    """'lr=0.05,bias_lr_scale=1' → {'lr': 0.05, 'bias_lr_scale': 1}, each value read as YAML."""
    pairs = [item.split("=", 1) for item in recipe.split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"recipe '{recipe}': give train.* settings as key=value, comma-separated")
    return {key: yaml.safe_load(value) for key, value in pairs}


def main() -> None:
    try:
        check()
    except (ParamsError, UserError) as exc:
        raise SystemExit(exc.message) from None


def check() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipes", nargs="+", help="train.* overrides, such as lr=0.05,bias_lr_scale=1")
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--kwargs", default="", help="model.kwargs as YAML (default: params.yaml's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=10_000, help="training images")
    parser.add_argument("--val", type=int, default=2_000, help="validation images scored")
    parser.add_argument("--data", default="data/cifar-10-batches-py")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg = load_params(args.params)
    kwargs = yaml.safe_load(args.kwargs) if args.kwargs else cfg.model.kwargs
    train, val = train_and_validation(args.data, cfg.data.val_size, cfg.data.split_seed, limit=args.val)
    subset = Split(train.images[: args.images], train.labels[: args.images])
    device, dtype = resolve_runtime(cfg.train.device, cfg.train.precision)
    made = provenance(device, dtype, None)
    print(
        f"{args.arch} {kwargs}: {counted(args.epochs, 'epoch')} on {len(subset):,} training images, scored on "
        f"{len(val):,} validation images; {made['cpu']} ({made['cpu_flags']}), {made['precision']}, "
        f"{counted(made['threads'], 'thread')}",
        flush=True,
    )
    for recipe in args.recipes:
        torch.manual_seed(cfg.train.seed)
        raw = cfg.model_dump()
        raw["train"] |= {**overrides(recipe), "epochs": args.epochs}
        train_cfg = parse_params(raw, source=f"recipe '{recipe}'").train  # the schema checks it
        model = build_model(args.arch, kwargs)
        if train_cfg.whiten:  # as the train stage starts
            whiten_first_conv(model, subset.images, frozen=train_cfg.whiten == "frozen")
        began = time.perf_counter()
        fit(model, subset, train_cfg, runtime=(device, dtype))
        correct = split_correct(model, val, batch_size=cfg.evaluate.batch_size, device=device, dtype=dtype)
        print(
            f"{recipe or 'params.yaml'}: validation accuracy {correct.float().mean().item():.3f} "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
