"""evaluate: test accuracy, per-class accuracy, confusion matrix, size and latency of each model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from prunelab.checkpoints import file_digest, load_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import ParamsOption, console, done, single_command_app
from prunelab.compact import compacted_copy
from prunelab.data import class_names, load_split, split_validation
from prunelab.device import resolve_runtime
from prunelab.errors import UserError
from prunelab.io import read_json, staged_outputs
from prunelab.measure import (
    accuracy_report,
    compacted_twins,
    compare_latency,
    confusion_rows,
    count_macs,
    file_bytes,
    reusable_scores,
    same_shapes,
    scoring_setup,
    sparsity_report,
    speedups,
)
from prunelab.onnx_runtime import INT8, OnnxModel, onnx_latency, onnx_sessions, onnx_setup, quantized_session
from prunelab.params import load_params
from prunelab.predict import predict
from prunelab.provenance import provenance


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
    scores: Annotated[
        list[Path] | None,
        typer.Option(help="an earlier evaluate's metrics: its scores of the same checkpoints are reused"),
    ] = None,
    latency: Annotated[
        bool, typer.Option(help="measure latency (against the model named baseline, else the first)")
    ] = True,
    int8: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME of a model also quantized to int8 in onnxruntime, calibrated on "
            "evaluate.int8_calibration_images training images: its row is NAME_int8"
        ),
    ] = None,
) -> None:
    """Evaluate each NAME=CHECKPOINT on the CIFAR-10 test set. Each distinct model is scored once:
    a checkpoint scored before (--scores, same test data and settings) keeps its score, and a
    compacted model's score serves the masked model it was checked against. Latency is always
    measured afresh, in interleaved rounds, once for each set of models with the same shapes. A
    model named by --int8 gets one more row: its ONNX export quantized to int8, scored and timed
    in onnxruntime."""
    cfg = load_params(params)
    named = dict(_parse_model_option(m) for m in model)
    for name in int8 or []:
        if name not in named:
            raise UserError(f"--int8 {name}: no --model named {name!r}; name one of {', '.join(named)}")
    test = load_split(data, train=False)
    classes = class_names(data)
    device, dtype = resolve_runtime(cfg.train.device, cfg.train.precision)
    earlier = {str(path): read_json(path) for path in scores or []}
    # every checkpoint is loaded (and checked) before any work
    ckpts = {name: load_checkpoint(path) for name, path in named.items()}
    nets = {name: load_model(ckpts[name], str(named[name])) for name in named}
    digests = {name: file_digest(path) for name, path in named.items()}
    setup = scoring_setup(cfg.evaluate.tta, dtype, device, cfg.evaluate.batch_size, test.images, test.labels)
    reused = reusable_scores(digests, setup, earlier)
    twins = {
        masked: small
        for masked, small in compacted_twins({n: c.meta for n, c in ckpts.items()}, digests).items()
        if masked not in reused and small not in reused
    }
    twins = {m: s for m, s in twins.items() if s not in twins}  # in a chain A → B → C, B takes C's
    results = {name: _facts(net, named[name], digests[name]) for name, net in nets.items()}
    confusions: dict[str, list[dict[str, str]]] = {}
    for name, net in nets.items():
        if name in reused:
            entry, source = reused[name]
            results[name].update(acc=entry["acc"], per_class_acc=entry["per_class_acc"], scored=source)
        elif name not in twins:
            # a masked model is scored in its compacted form where that is the same function
            small = compacted_copy(net, test.images[:64], cfg.compact.tolerance, device)
            logits = predict(
                small or net,
                test.images,
                batch_size=cfg.evaluate.batch_size,
                device=device,
                dtype=dtype,
                tta=cfg.evaluate.tta,
            )
            scored = "here, compacted" if small is not None else "here"
            results[name].update(**accuracy_report(logits, test.labels, classes), scored=scored)
            confusions[name] = confusion_rows(logits, test.labels, classes)
    for masked, small in twins.items():
        results[masked].update(
            acc=results[small]["acc"], per_class_acc=results[small]["per_class_acc"], scored=f"as {small}"
        )
        confusions[masked] = confusions[small]
    quantized = {}
    if int8:
        train, _ = split_validation(load_split(data, train=True), cfg.data.val_size, cfg.data.split_seed)
        calibration = train.images[: cfg.evaluate.int8_calibration_images]
        for name in int8:
            session, size = quantized_session(nets[name], calibration)
            quantized[f"{name}_int8"] = session
            logits = predict(
                OnnxModel(session),
                test.images,
                batch_size=cfg.evaluate.batch_size,
                device=device,
                dtype=dtype,
                tta=cfg.evaluate.tta,
            )
            results[f"{name}_int8"] = {
                **{k: results[name][k] for k in ("sparsity", "params", "params_nonzero", "macs")},
                **size,
                **accuracy_report(logits, test.labels, classes),
                "scored": "here, onnxruntime int8",
                "quantized_from": name,
            }
            confusions[f"{name}_int8"] = confusion_rows(logits, test.labels, classes)
    # speed-ups against the baseline, else the first model, measured in the same rounds; a
    # model with the reference's shapes (masked, not compacted) shares its measurement
    reference = "baseline" if "baseline" in nets else next(iter(nets))
    shared = same_shapes({reference: nets[reference], **nets})
    measured = {name: nets[name] for name in dict.fromkeys(shared.values())}
    timing = bool(latency and cfg.evaluate.latency_batch_sizes)
    # and in the runtime CNNs are deployed with on CPUs (onnx_runtime.py), int8 rows only there
    sessions = {**onnx_sessions(measured), **quantized} if timing else {}
    rows = {"": shared, "onnx_": {**shared, **{q: q for q in quantized}}}
    for batch in cfg.evaluate.latency_batch_sizes if timing else []:
        timings = compare_latency(measured, batch, dtype, cfg.evaluate.latency_seconds, device=device)
        onnx = onnx_latency(sessions, batch, cfg.evaluate.latency_seconds)
        for timed, prefix in ((timings, ""), (onnx, "onnx_")):
            latency_ms = {name: timed[source]["median_ms"] for name, source in rows[prefix].items()}
            for name, speedup in speedups(latency_ms, reference).items():
                results[name][f"{prefix}latency_ms_b{batch}"] = latency_ms[name]
                results[name][f"{prefix}latency_iqr_ms_b{batch}"] = timed[rows[prefix][name]]["iqr_ms"]
                results[name][f"{prefix}speedup_b{batch}"] = speedup
    for name in nets if timing else []:
        results[name]["latency_measured"] = "here" if shared[name] == name else f"as {shared[name]}"
    # every model here descends from one baseline: its training epochs stand for all
    epochs = next(iter(ckpts.values())).meta.get("epochs")
    with staged_outputs() as outputs:
        int8_setup = {"int8": {**INT8, "calibration_images": len(calibration)}} if quantized else {}
        runtime = {"onnx_runtime": {**onnx_setup(), **int8_setup}} if timing or quantized else {}
        outputs.write_json(
            metrics, {**results, "scoring": setup, **runtime, "provenance": provenance(device, dtype, epochs)}
        )
        for name, rows in confusions.items():
            outputs.write_json(plots / f"{name}.json", rows)
    _print_table(results, cfg.evaluate.latency_batch_sizes if latency else [])
    done("evaluated", metrics, plots)


def _facts(net: torch.nn.Module, path: Path, digest: str) -> dict:
    """What a model is, whoever scores it: sparsity, size, MACs, its checkpoint's bytes and digest."""
    sparsity = sparsity_report(net)
    return {
        "sparsity": sparsity["sparsity"],
        "params": sparsity["params"],
        "params_nonzero": sparsity["params_nonzero"],
        "macs": count_macs(net),
        **file_bytes(str(path)),
        "checkpoint_sha256": digest,
    }


def _parse_model_option(option: str) -> tuple[str, Path]:
    name, sep, path = option.partition("=")
    if not sep or not name or not path:
        raise UserError(f"--model {option!r}: expected NAME=CHECKPOINT, e.g. --model pruned=models/pruned.pt")
    return name, Path(path)


def _print_table(results: dict[str, dict], batch_sizes: list[int]) -> None:
    speed = [f"{runtime} ms b{b} (×)" for b in batch_sizes for runtime in ("eager", "onnx")]
    table = Table(
        "model",
        "test acc",
        "scored",
        "sparsity",
        "params",
        "nonzero",
        "MACs",
        "gzip bytes",
        *speed,
        title="evaluate",
    )
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['acc']:.4f}",
            r["scored"],
            f"{r['sparsity']:.4f}",
            f"{r['params']:,}",
            f"{r['params_nonzero']:,}",
            f"{r['macs'] / 1e6:.1f} M",
            f"{r['bytes_gzip']:,}",
            *(
                f"{r[f'{p}latency_ms_b{b}']:.2f} ({r[f'{p}speedup_b{b}']:.2f})"
                if f"{p}latency_ms_b{b}" in r
                else "–"  # an int8 row runs in onnxruntime only
                for b in batch_sizes
                for p in ("", "onnx_")
            ),
        )
    console.print(table)


app = single_command_app(main)
