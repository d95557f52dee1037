"""evaluate: test accuracy, per-class accuracy, confusion matrix and sparsity of each model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prunelab.commands import ParamsOption, console, done, single_command_app
from prunelab.data import class_names, load_split
from prunelab.errors import UserError
from prunelab.io import load_checkpoint, load_state_into, write_json
from prunelab.measure import accuracy_report, confusion_rows, sparsity_report
from prunelab.models import build_model
from prunelab.params import load_params
from prunelab.train import predict, resolve_device, resolve_precision


def main(
    model: Annotated[list[str], typer.Option(help="NAME=CHECKPOINT to evaluate; repeat for each model")],
    params: ParamsOption = Path("params.yaml"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/evaluate.json"),
    plots: Annotated[Path, typer.Option(help="directory for confusion-matrix plot data")] = Path(
        "plots/confusion"
    ),
) -> None:
    """Evaluate each NAME=CHECKPOINT on the CIFAR-10 test set."""
    cfg = load_params(params)
    named = dict(_parse_model_option(m) for m in model)
    test = load_split(data, train=False)
    classes = class_names(data)
    device = resolve_device(cfg.train.device)
    dtype = resolve_precision(cfg.train.precision, device)
    results, confusions = {}, {}
    for name, path in named.items():
        ckpt = load_checkpoint(path)
        net = build_model(ckpt.arch, ckpt.model_kwargs)
        load_state_into(net, ckpt.state_dict, str(path))
        logits = predict(
            net,
            test.images,
            batch_size=cfg.evaluate.batch_size,
            device=device,
            dtype=dtype,
            tta=cfg.evaluate.tta,
        )
        report = accuracy_report(logits, test.labels, classes)
        sparsity = sparsity_report(net)
        results[name] = {
            "acc": report["acc"],
            "sparsity": sparsity["sparsity"],
            "params": sparsity["params"],
            "params_nonzero": sparsity["params_nonzero"],
            "per_class_acc": report["per_class_acc"],
        }
        confusions[name] = confusion_rows(logits, test.labels, classes)
    write_json(metrics, results)
    for name, rows in confusions.items():
        write_json(plots / f"{name}.json", rows)
    _print_table(results)
    done("evaluated", metrics, plots)


def _parse_model_option(option: str) -> tuple[str, Path]:
    name, sep, path = option.partition("=")
    if not sep or not name or not path:
        raise UserError(f"--model {option!r}: expected NAME=CHECKPOINT, e.g. --model pruned=models/pruned.pt")
    return name, Path(path)


def _print_table(results: dict[str, dict]) -> None:
    table = Table("model", "test acc", "sparsity", "params", "nonzero params", title="evaluate")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['acc']:.4f}",
            f"{r['sparsity']:.3f}",
            f"{r['params']:,}",
            f"{r['params_nonzero']:,}",
        )
    console.print(table)


app = single_command_app(main)
