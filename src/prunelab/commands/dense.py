"""dense: score the dense baseline on exactly the validation images the comparison's points use:
the reference every point is compared against, image by image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.checkpoints import load_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.data import train_and_validation
from prunelab.device import resolve_runtime
from prunelab.io import staged_outputs
from prunelab.measure import count_macs
from prunelab.params import load_params
from prunelab.per_image import correct_path, encode
from prunelab.predict import split_correct
from prunelab.provenance import provenance


def main(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="baseline checkpoint")] = Path("models/baseline.pt"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    out: Annotated[Path, typer.Option(help="metrics JSON of the dense reference")] = Path(
        "metrics/sweep/dense.json"
    ),
) -> None:
    """Score the baseline on the first sweep.val_images validation images, the images every
    sweep point is scored on, and keep which of them it got right (OUT as .correct.json)."""
    cfg = load_params(params)
    ckpt = load_checkpoint(model)
    _, val = train_and_validation(data, cfg.data.val_size, cfg.data.split_seed, cfg.sweep.val_images)
    device, dtype = resolve_runtime(cfg.train.device, cfg.train.precision)
    baseline = load_model(ckpt, str(model))
    correct = split_correct(baseline, val, batch_size=cfg.evaluate.batch_size, device=device, dtype=dtype)
    metrics = {
        "val_acc": round(correct.float().mean().item(), 6),
        "val_images": len(val),
        "macs": count_macs(baseline),
        "provenance": provenance(device, dtype, ckpt.meta.get("epochs")),
    }
    with staged_outputs() as outputs:
        outputs.write_json(out, metrics)
        outputs.write_json(correct_path(out), {"images": len(val), "dense": encode(correct.numpy())})
    done(f"dense reference on {len(val)} validation images", out, correct_path(out))


app = single_command_app(main)
