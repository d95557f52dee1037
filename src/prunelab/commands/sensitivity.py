"""sensitivity: per-layer pruning sensitivity, derived per-layer amounts, and whether they beat
uniform pruning at the same sparsity."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from torch import nn

from prunelab.commands import ParamsOption, console, done, single_command_app
from prunelab.data import validation_images
from prunelab.io import load_checkpoint, write_json, write_text
from prunelab.models import model_from_checkpoint
from prunelab.params import load_params
from prunelab.report import save_sensitivity_png, sensitivity_markdown
from prunelab.sensitivity import compare_with_uniform, derive_amounts, layer_curves
from prunelab.train import predict, resolve_device, resolve_precision


def main(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="baseline checkpoint")] = Path("models/baseline.pt"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/sensitivity.json"),
    plots: Annotated[Path, typer.Option(help="folder for DVC plot data (one file per method)")] = Path(
        "plots/sensitivity"
    ),
    table: Annotated[Path, typer.Option(help="markdown summary to write")] = Path("report/sensitivity.md"),
    png: Annotated[Path, typer.Option(help="heat map to write")] = Path("report/sensitivity.png"),
) -> None:
    """Prune each layer alone at each sensitivity.amounts, score it on the validation split, and
    derive per-layer amounts within sensitivity.budget."""
    cfg = load_params(params)
    net = model_from_checkpoint(load_checkpoint(model), str(model)).eval()
    val = validation_images(data, cfg.data.val_size, cfg.data.split_seed, cfg.sensitivity.val_images)
    device = resolve_device(cfg.train.device)
    dtype = resolve_precision(cfg.train.precision, device)

    def score(m: nn.Module) -> float:
        logits = predict(m, val.images, batch_size=cfg.evaluate.batch_size, device=device, dtype=dtype)
        return round((logits.argmax(1) == val.labels).float().mean().item(), 6)

    reference = score(net)
    results: dict[str, dict] = {}
    for method in cfg.sensitivity.methods:
        curves = layer_curves(net, cfg.prune, method, cfg.sensitivity.amounts, score)
        per_layer = derive_amounts(curves, reference, cfg.sensitivity.budget)
        comparison = compare_with_uniform(net, cfg.prune, method, per_layer, score)
        results[method] = {"curves": curves, "derived": asdict(comparison)}
        rows = [
            {"layer": unit, "amount": float(a), "val_acc": acc}
            for unit, c in curves.items()
            for a, acc in c.items()
        ]
        write_json(plots / f"{method}.json", rows)
    summary = {
        "val_acc_dense": reference,
        "val_images": len(val),
        "budget": cfg.sensitivity.budget,
        "methods": results,
    }
    write_json(metrics, summary)
    markdown = sensitivity_markdown(summary)
    write_text(table, markdown)
    save_sensitivity_png(summary, png)
    console.print(markdown)
    done("sensitivity", metrics, plots, table, png)


app = single_command_app(main)
