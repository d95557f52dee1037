"""sensitivity: per-layer pruning sensitivity, derived per-layer amounts, and whether they beat
uniform pruning at the same sparsity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from torch import nn

from prunelab.checkpoints import load_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import ParamsOption, console, done, single_command_app
from prunelab.comparison.sensitivity import analyse
from prunelab.data import train_and_validation
from prunelab.device import resolve_runtime
from prunelab.io import staged_outputs
from prunelab.methods import check_method_names, resolve_method
from prunelab.params import load_params
from prunelab.predict import split_accuracy
from prunelab.provenance import provenance
from prunelab.sensitivity_report import layer_curve_rows, save_sensitivity_png, sensitivity_markdown
from prunelab.train import loss_gradients


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
    check_method_names(cfg.sensitivity.methods, "sensitivity.methods", per_layer=True)
    ckpt = load_checkpoint(model)
    net = load_model(ckpt, str(model)).eval()
    train, val = train_and_validation(
        data, cfg.data.val_size, cfg.data.split_seed, cfg.sensitivity.val_images
    )
    device, dtype = resolve_runtime(cfg.train.device, cfg.train.precision)

    def score(m: nn.Module) -> float:
        return round(
            split_accuracy(m, val, batch_size=cfg.evaluate.batch_size, device=device, dtype=dtype), 6
        )

    gradients = None
    if any(resolve_method(m).needs_gradients for m in cfg.sensitivity.methods):
        gradients = loss_gradients(
            train, cfg.prune.gradient_images, batch_size=cfg.evaluate.batch_size, device=device, dtype=dtype
        )
    analysis = analyse(net, cfg.prune, cfg.sensitivity, score, gradients)
    summary = {
        "val_acc_dense": analysis["val_acc_dense"],
        "val_images": len(val),
        **analysis,
        "provenance": provenance(device, dtype, ckpt.meta.get("epochs")),
    }
    markdown = sensitivity_markdown(summary)
    with staged_outputs() as outputs:
        for method, result in summary["methods"].items():
            outputs.write_json(plots / f"{method}.json", layer_curve_rows(result["curves"]))
        outputs.write_json(metrics, summary)
        outputs.write_text(table, markdown)
        save_sensitivity_png(summary, outputs.path(png))
    console.print(markdown, markup=False)
    done("sensitivity", metrics, plots, table, png)


app = single_command_app(main)
