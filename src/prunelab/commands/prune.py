"""prune: prune a checkpoint as params.yaml's `prune` section says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.compact import compacted_macs, load_model
from prunelab.data import load_split, split_validation
from prunelab.device import resolve_device, resolve_precision
from prunelab.io import read_json, staged_outputs
from prunelab.measure import count_macs, sparsity_report
from prunelab.params import load_params
from prunelab.provenance import provenance_of
from prunelab.prune import amount_for_macs_reduction, check_prune_params, prune_model
from prunelab.sensitivity import with_derived_amounts
from prunelab.train import fine_tuning_between_steps, loss_gradients


def main(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="checkpoint to prune")] = Path("models/baseline.pt"),
    data: Annotated[
        Path, typer.Option(help="CIFAR-10 directory (fine-tuning between steps, gradient criteria)")
    ] = Path("data/cifar-10-batches-py"),
    out: Annotated[Path, typer.Option(help="pruned checkpoint to write")] = Path("models/pruned.pt"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/prune.json"),
    sensitivity: Annotated[
        Path, typer.Option(help="sensitivity metrics (prune.per_layer: from_sensitivity)")
    ] = Path("metrics/sensitivity.json"),
) -> None:
    """Prune the model (one-shot or gradually); the saved weights have the pruning made permanent
    and the masks recorded."""
    cfg = load_params(params)
    method = check_prune_params(cfg.prune)
    prune_cfg = cfg.prune
    if prune_cfg.per_layer == "from_sensitivity":
        prune_cfg = with_derived_amounts(prune_cfg, read_json(sensitivity))
    ckpt = load_checkpoint(model)
    net = load_model(ckpt, str(model))
    before = sparsity_report(net)
    fine_tunes_between = prune_cfg.steps > 1 and prune_cfg.finetune_between > 0
    gradients = between_steps = None
    if fine_tunes_between or method.needs_gradients:
        train_split, val_split = split_validation(
            load_split(data, train=True), cfg.data.val_size, cfg.data.split_seed
        )
        device = resolve_device(cfg.train.device)
        gradients = loss_gradients(
            train_split,
            prune_cfg.gradient_images,
            batch_size=cfg.evaluate.batch_size,
            device=device,
            dtype=resolve_precision(cfg.train.precision, device),
        )
        if fine_tunes_between:
            between_steps = fine_tuning_between_steps(
                net,
                train_split,
                val_split,
                cfg.train,
                cfg.finetune,
                prune_cfg.finetune_between,
                prune_cfg.steps,
            )
    if prune_cfg.macs_reduction is not None:
        amount = amount_for_macs_reduction(net, prune_cfg, gradients)
        prune_cfg = prune_cfg.model_copy(update={"amount": amount})
    macs_before = count_macs(net)
    result = prune_model(net, prune_cfg, between_steps=between_steps, gradients=gradients)
    after = sparsity_report(net)
    macs = {"macs": macs_before}
    if method.unit == "channel" and prune_cfg.dim == 0:
        # What compaction will make of it: the MACs a structured target is about.
        macs["macs_compact"] = compacted_macs(net)
        macs["macs_reduction"] = round(1 - macs["macs_compact"] / macs_before, 6)
    with staged_outputs() as outputs:
        save_checkpoint(
            outputs.path(out),
            Checkpoint(
                arch=ckpt.arch,
                model_kwargs=ckpt.model_kwargs,
                state_dict=net.state_dict(),
                masks=result.masks,
                meta={**ckpt.meta, "stage": "prune", "prune": prune_cfg.model_dump()},
            ),
        )
        outputs.write_json(
            metrics,
            {
                "method": prune_cfg.method,
                "amount": prune_cfg.amount,  # resolved from prune.macs_reduction if that is set
                "schedule": prune_cfg.schedule,
                "steps": prune_cfg.steps,
                "sparsity": after["sparsity"],
                "targeted_sparsity": result.targeted_sparsity,
                "params": after["params"],
                "params_nonzero": after["params_nonzero"],
                "params_zeroed": after["params_zero"] - before["params_zero"],
                **macs,
                "layers": after["layers"],
                "provenance": provenance_of(cfg.train, ckpt.meta.get("epochs")),
            },
        )
    done(f"pruned with {prune_cfg.method} (amount {prune_cfg.amount:g}, {prune_cfg.schedule})", out, metrics)


app = single_command_app(main)
