"""prune: prune a checkpoint as params.yaml's `prune` section says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.compact import compacted_macs
from prunelab.data import load_split, split_validation
from prunelab.errors import UserError
from prunelab.io import Checkpoint, load_checkpoint, read_json, save_checkpoint, write_json
from prunelab.measure import count_macs, sparsity_report
from prunelab.models import model_from_checkpoint
from prunelab.params import PruneParams, load_params
from prunelab.prune import amount_for_macs_reduction, prune_model, resolve_method
from prunelab.train import fit


def main(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="checkpoint to prune")] = Path("models/baseline.pt"),
    data: Annotated[Path, typer.Option(help="CIFAR-10 directory (fine-tuning between steps)")] = Path(
        "data/cifar-10-batches-py"
    ),
    out: Annotated[Path, typer.Option(help="pruned checkpoint to write")] = Path("models/pruned.pt"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/prune.json"),
    sensitivity: Annotated[
        Path, typer.Option(help="sensitivity metrics (prune.per_layer: from_sensitivity)")
    ] = Path("metrics/sensitivity.json"),
) -> None:
    """Prune the model (one-shot or gradually); the saved weights have the pruning made permanent
    and the masks recorded."""
    cfg = load_params(params)
    prune_cfg = cfg.prune
    if prune_cfg.per_layer == "from_sensitivity":
        prune_cfg = with_derived_amounts(prune_cfg, read_json(sensitivity))
    ckpt = load_checkpoint(model)
    net = model_from_checkpoint(ckpt, str(model))
    before = sparsity_report(net)
    if prune_cfg.macs_reduction is not None:
        prune_cfg = prune_cfg.model_copy(update={"amount": amount_for_macs_reduction(net, prune_cfg)})
    macs_before = count_macs(net)

    between_steps = None
    if cfg.prune.steps > 1 and cfg.prune.finetune_between > 0:
        train_split, val_split = split_validation(
            load_split(data, train=True), cfg.data.val_size, cfg.data.split_seed
        )
        step_cfg = cfg.finetune.train_params(cfg.train, epochs=cfg.prune.finetune_between)

        def between_steps(step: int) -> None:
            # The pruning parametrisation (weight = weight_orig * mask) is still active here, so
            # pruned weights stay zero while the rest recovers.
            fit(
                net,
                train_split,
                step_cfg.model_copy(update={"seed": step_cfg.seed + step}),
                val=val_split,
                label=f"step {step}/{cfg.prune.steps} fine-tune",
            )

    result = prune_model(net, prune_cfg, between_steps=between_steps)
    after = sparsity_report(net)
    macs = {"macs": macs_before}
    if resolve_method(prune_cfg.method).unit == "channel" and prune_cfg.dim == 0:
        # What compaction will make of it: the MACs a structured target is about.
        macs["macs_compact"] = compacted_macs(net)
        macs["macs_reduction"] = round(1 - macs["macs_compact"] / macs_before, 6)
    save_checkpoint(
        out,
        Checkpoint(
            arch=ckpt.arch,
            model_kwargs=ckpt.model_kwargs,
            state_dict=net.state_dict(),
            masks=result.masks,
            meta={**ckpt.meta, "stage": "prune", "prune": prune_cfg.model_dump()},
        ),
    )
    write_json(
        metrics,
        {
            "method": cfg.prune.method,
            "amount": prune_cfg.amount,  # resolved from prune.macs_reduction if that is set
            "schedule": cfg.prune.schedule,
            "steps": cfg.prune.steps,
            "sparsity": after["sparsity"],
            "targeted_sparsity": result.targeted_sparsity,
            "params": after["params"],
            "params_nonzero": after["params_nonzero"],
            "params_zeroed": after["params_zero"] - before["params_zero"],
            **macs,
            "layers": after["layers"],
        },
    )
    done(f"pruned with {cfg.prune.method} (amount {prune_cfg.amount:g}, {cfg.prune.schedule})", out, metrics)


def with_derived_amounts(cfg: PruneParams, sensitivity: dict) -> PruneParams:
    """prune.per_layer: from_sensitivity → the derived amounts of prune.method, on those layers."""
    methods = sensitivity.get("methods", {})
    if cfg.method not in methods:
        raise UserError(
            f"prune.per_layer = from_sensitivity: no sensitivity results for prune.method '{cfg.method}' "
            f"(analysed: {', '.join(methods) or 'none'}); add it to sensitivity.methods"
        )
    per_layer = {k: v for k, v in methods[cfg.method]["derived"]["per_layer"].items() if v > 0}
    if not per_layer:
        raise UserError(
            "prune.per_layer = from_sensitivity: no layer stays within sensitivity.budget at any amount"
        )
    return cfg.model_copy(update={"per_layer": per_layer, "targets": list(per_layer), "exclude": []})


app = single_command_app(main)
