"""sweep: one point of the comparison grid: prune the baseline with METHOD at POINT (an amount
or a cost target), score it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.checkpoints import load_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.comparison.sweep import score_point
from prunelab.data import train_and_validation
from prunelab.device import resolve_runtime
from prunelab.errors import UserError
from prunelab.io import staged_outputs
from prunelab.methods import check_method_names
from prunelab.onnx_runtime import onnx_setup
from prunelab.params import check_sweep_point, cost_target, load_params
from prunelab.per_image import correct_path
from prunelab.provenance import provenance


def main(
    method: Annotated[str, typer.Option(help="pruning method (registry name or import path)")],
    point: Annotated[
        str, typer.Option(help="an amount (fraction in [0, 1] or int count), or a cost target like 2x")
    ],
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="baseline checkpoint")] = Path("models/baseline.pt"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    out: Annotated[Path, typer.Option(help="metrics JSON of this point")] = Path("metrics/sweep/point.json"),
    correct: Annotated[
        Path | None,
        typer.Option(help="which validation images each score got right [default: OUT as .correct.json]"),
    ] = None,
) -> None:
    """Prune the baseline one-shot with --method at --point over sweep.targets and score it on
    the validation split after each of sweep.recovery (the test set is kept for evaluate), with
    its random floor; seed-dependent results once per sweep.seeds entry, as mean and std."""
    cfg = load_params(params)
    check_method_names([method], "--method")
    parsed = _parse_point(point)
    ckpt = load_checkpoint(model)
    train, val = train_and_validation(data, cfg.data.val_size, cfg.data.split_seed, cfg.sweep.val_images)
    device, dtype = resolve_runtime(cfg.train.device, cfg.train.precision)
    scores = score_point(
        lambda: load_model(ckpt, str(model)), cfg, method, parsed, train, val, device=device, dtype=dtype
    )
    correct = correct or correct_path(out)
    with staged_outputs() as outputs:
        outputs.write_json(
            out,
            {
                **scores.metrics,
                "onnx_runtime": onnx_setup(),
                "provenance": provenance(device, dtype, ckpt.meta.get("epochs")),
            },
        )
        outputs.write_json(correct, scores.correct)
    done(f"sweep point {method} @ {point}", out, correct)


def _parse_point(text: str) -> float | int | str:
    try:
        if cost_target(text) is not None:
            return check_sweep_point(text)
        value: float | int = int(text) if text.lstrip("-").isdigit() else float(text)
        return check_sweep_point(value)
    except ValueError as exc:
        raise UserError(f"--point {text!r}: {exc}") from None


app = single_command_app(main)
