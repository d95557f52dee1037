"""sweep: one point of the comparison grid: prune the baseline with METHOD at AMOUNT, score it."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Annotated

import typer

from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.data import validation_images
from prunelab.errors import UserError
from prunelab.io import load_checkpoint, write_json
from prunelab.measure import sparsity_report
from prunelab.models import model_from_checkpoint
from prunelab.params import check_amount, load_params
from prunelab.prune import prune_model, resolve_method
from prunelab.train import predict, resolve_device, resolve_precision


def main(
    method: Annotated[str, typer.Option(help="pruning method (registry name or import path)")],
    amount: Annotated[str, typer.Option(help="fraction in [0, 1], or an int count")],
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="baseline checkpoint")] = Path("models/baseline.pt"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    out: Annotated[Path, typer.Option(help="metrics JSON of this point")] = Path("metrics/sweep/point.json"),
) -> None:
    """Prune the baseline one-shot with --method/--amount over sweep.targets and score it on the
    validation split (the test set is kept for evaluate); seed-dependent methods once per
    sweep.seeds entry, reported as mean and std."""
    cfg = load_params(params)
    pruning = resolve_method(method)
    prune_cfg = cfg.sweep.prune_params(cfg.prune, method, _parse_amount(amount))
    seeds = cfg.sweep.seeds if pruning.stochastic(prune_cfg) else cfg.sweep.seeds[:1]
    ckpt = load_checkpoint(model)
    val = validation_images(data, cfg.data.val_size, cfg.data.split_seed, cfg.sweep.val_images)
    device = resolve_device(cfg.train.device)
    accs = []
    for seed in seeds:
        net = model_from_checkpoint(ckpt, str(model))
        result = prune_model(net, prune_cfg.model_copy(update={"seed": seed}))
        logits = predict(
            net,
            val.images,
            batch_size=cfg.evaluate.batch_size,
            device=device,
            dtype=resolve_precision(cfg.train.precision, device),
        )
        accs.append((logits.argmax(1) == val.labels).float().mean().item())
    sparsity = sparsity_report(net)
    write_json(
        out,
        {
            "method": method,
            "amount": prune_cfg.amount,
            "val_acc": round(statistics.fmean(accs), 6),
            "val_acc_std": round(statistics.stdev(accs), 6) if len(accs) > 1 else 0.0,
            "val_acc_by_seed": {str(s): round(a, 6) for s, a in zip(seeds, accs, strict=True)},
            "targeted_sparsity": result.targeted_sparsity,
            "sparsity": sparsity["sparsity"],
            "params_nonzero": sparsity["params_nonzero"],
            "params": sparsity["params"],
            "val_images": len(val),
        },
    )
    done(f"sweep point {method} @ {amount}", out)


def _parse_amount(text: str) -> float | int:
    try:
        value: float | int = int(text) if text.lstrip("-").isdigit() else float(text)
        return check_amount(value)
    except ValueError as exc:
        raise UserError(f"--amount {text!r}: {exc}") from None


app = single_command_app(main)
