"""prune: prune a checkpoint as params.yaml's `prune` section says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.data import load_split, split_validation
from prunelab.device import resolve_runtime
from prunelab.io import staged_outputs
from prunelab.measure import count_macs, sparsity_report
from prunelab.params import load_params
from prunelab.provenance import provenance
from prunelab.pruning_run import compacted_macs_of, plan_run, run_pruning
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
    run = plan_run(cfg.prune, sensitivity)
    ckpt = load_checkpoint(model)
    net = load_model(ckpt, str(model))
    before = sparsity_report(net)
    gradients = between_steps = None
    runtime = resolve_runtime(cfg.train.device, cfg.train.precision)
    if run.needs_training_images:
        train_split, val_split = split_validation(
            load_split(data, train=True), cfg.data.val_size, cfg.data.split_seed
        )
        gradients = loss_gradients(
            train_split,
            run.cfg.gradient_images,
            batch_size=cfg.evaluate.batch_size,
            device=runtime.device,
            dtype=runtime.dtype,
        )
        if run.fine_tunes_between_steps:
            between_steps = fine_tuning_between_steps(
                net,
                train_split,
                val_split,
                cfg.train,
                cfg.finetune,
                run.cfg.finetune_between,
                run.cfg.steps,
                runtime=runtime,
            )
    macs_before = count_macs(net)
    run, result = run_pruning(net, run, gradients=gradients, between_steps=between_steps)
    after = sparsity_report(net)
    macs = {"macs": macs_before}
    if (macs_compact := compacted_macs_of(net, run)) is not None:
        # What compaction will make of it: the MACs a structured target is about.
        macs["macs_compact"] = macs_compact
        macs["macs_reduction"] = round(1 - macs_compact / macs_before, 6)
    with staged_outputs() as outputs:
        save_checkpoint(
            outputs.path(out),
            Checkpoint(
                arch=ckpt.arch,
                model_kwargs=ckpt.model_kwargs,
                state_dict=net.state_dict(),
                masks=result.masks,
                meta={**ckpt.meta, "stage": "prune", "prune": run.cfg.model_dump()},
            ),
        )
        outputs.write_json(
            metrics,
            {
                "method": run.cfg.method,
                "amount": run.cfg.amount,  # resolved from prune.macs_reduction if that is set
                "schedule": run.cfg.schedule,
                "steps": run.cfg.steps,
                "sparsity": after["sparsity"],
                "targeted_sparsity": result.targeted_sparsity,
                "params": after["params"],
                "params_nonzero": after["params_nonzero"],
                "params_zeroed": after["params_zero"] - before["params_zero"],
                **macs,
                "layers": after["layers"],
                "provenance": provenance(*runtime, ckpt.meta.get("epochs")),
            },
        )
    done(f"pruned with {run.cfg.method} (amount {run.cfg.amount:g}, {run.cfg.schedule})", out, metrics)


app = single_command_app(main)
