"""finetune: recover accuracy after pruning, with the pruning masks held."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.comparison.recovery import fit_masked
from prunelab.data import load_split, split_validation
from prunelab.device import resolve_runtime
from prunelab.dvclive_logging import dvclive_epochs
from prunelab.errors import UserError
from prunelab.io import staged_outputs
from prunelab.measure import sparsity_report
from prunelab.params import load_params
from prunelab.provenance import provenance
from prunelab.train import Distillation, EpochRecord, pruned_weights_nonzero


def main(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="pruned checkpoint (with masks)")] = Path("models/pruned.pt"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    out: Annotated[Path, typer.Option(help="fine-tuned checkpoint to write")] = Path("models/finetuned.pt"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/finetune.json"),
    live: Annotated[Path, typer.Option(help="DVCLive directory for per-epoch curves")] = Path(
        "dvclive/finetune"
    ),
    teacher: Annotated[
        Path, typer.Option(help="the dense model distilled from when finetune.kd_weight is above 0")
    ] = Path("models/baseline.pt"),
) -> None:
    """Fine-tune the pruned model for finetune.epochs (0 passes it through unchanged). Pruned
    weights stay exactly zero: gradients, momentum and weights are masked after every step.
    Whole pruned channels are removed while it trains, so an epoch costs what the smaller
    model costs; the checkpoint keeps the masked model's shapes for the compact stage. With
    finetune.kd_weight above 0 it distils the dense --teacher, frozen in eval mode."""
    cfg = load_params(params)
    runtime = resolve_runtime(cfg.train.device, cfg.train.precision)
    ckpt = load_checkpoint(model)
    net = load_model(ckpt, str(model))
    unknown = sorted(set(ckpt.masks) - {name for name, _ in net.named_parameters()})
    if unknown:
        raise UserError(f"{model}: masks name parameters the model lacks: {', '.join(unknown)}")
    before = sparsity_report(net)
    history: list[EpochRecord] = []
    splits, distill = None, None
    if cfg.finetune.epochs > 0:  # read the data (and the teacher) before anything is written
        splits = split_validation(load_split(data, train=True), cfg.data.val_size, cfg.data.split_seed)
        if cfg.finetune.kd_weight > 0:
            dense = load_model(load_checkpoint(teacher), str(teacher))
            distill = Distillation(dense, cfg.finetune.kd_weight, cfg.finetune.kd_temperature)
    with staged_outputs() as outputs:
        with dvclive_epochs(outputs.path(live)) as log:
            if splits is not None:
                history = fit_masked(
                    net,
                    splits[0],
                    cfg.finetune.train_params(cfg.train),
                    ckpt.masks,
                    tolerance=cfg.compact.tolerance,
                    val=splits[1],
                    on_epoch=log,
                    label="finetune",
                    distill=distill,
                    runtime=runtime,
                )
        after = sparsity_report(net)
        revived = pruned_weights_nonzero(net, ckpt.masks)
        if revived:  # the invariant users rely on; never silent
            raise RuntimeError(f"fine-tuning revived {revived} pruned weights; please report this bug")
        save_checkpoint(
            outputs.path(out),
            Checkpoint(
                ckpt.arch,
                ckpt.model_kwargs,
                net.state_dict(),
                ckpt.masks,
                {**ckpt.meta, "stage": "finetune", "finetune": cfg.finetune.model_dump()},
            ),
        )
        last = history[-1] if history else None
        outputs.write_json(
            metrics,
            {
                "epochs": len(history),
                "val_acc": round(last.val_acc, 6) if last and last.val_acc is not None else None,
                "sparsity": after["sparsity"],
                "params_zero_before": before["params_zero"],
                "params_zero_after": after["params_zero"],
                "pruned_weights_nonzero": revived,
                "seconds": round(sum(r.seconds for r in history), 1),
                "provenance": provenance(*runtime, ckpt.meta.get("epochs")),
            },
        )
    done(f"fine-tuned for {len(history)} epoch(s)", out, metrics)


app = single_command_app(main)
