"""train: train the model from params.yaml on the CIFAR-10 training split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import torch
import typer

from prunelab.checkpoints import Checkpoint, load_init_state, load_state_into, save_checkpoint
from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.data import load_split, split_validation
from prunelab.device import resolve_runtime
from prunelab.dvclive_logging import dvclive_epochs
from prunelab.io import staged_outputs
from prunelab.models import build_model, whiten_first_conv
from prunelab.params import load_params
from prunelab.provenance import provenance
from prunelab.train import fit, planned_epochs


def main(
    params: ParamsOption = Path("params.yaml"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    out: Annotated[Path, typer.Option(help="checkpoint to write")] = Path("models/baseline.pt"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/train.json"),
    live: Annotated[Path, typer.Option(help="DVCLive directory for per-epoch curves")] = Path(
        "dvclive/train"
    ),
    resume: Annotated[Path, typer.Option(help="per-epoch resume state (kept outside DVC outputs)")] = Path(
        ".prunelab/train.resume.pt"
    ),
    seed: Annotated[
        int | None, typer.Option(help="train.seed of this run (a replicate baseline, sweep.replicates)")
    ] = None,
) -> None:
    """Train the baseline model (or start from train.init); resumes from the last finished
    epoch if interrupted."""
    cfg = load_params(params)
    if seed is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
    train_split, val_split = split_validation(
        load_split(data, train=True), cfg.data.val_size, cfg.data.split_seed
    )
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model.arch, cfg.model.kwargs)
    if cfg.train.init:
        load_state_into(model, load_init_state(cfg.train.init), f"train.init {cfg.train.init}")
    elif cfg.train.whiten:
        whiten_first_conv(model, train_split.images, frozen=cfg.train.whiten == "frozen")
    epochs = planned_epochs(cfg.train)
    # What the resume state must match: every setting that shapes the weights.
    shaping = [
        cfg.model.model_dump(),
        cfg.train.model_dump() | {"epochs": epochs},
        cfg.data.model_dump(exclude={"source"}),
    ]
    fingerprint = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
    runtime = resolve_runtime(cfg.train.device, cfg.train.precision)
    with staged_outputs() as outputs:
        with dvclive_epochs(outputs.path(live)) as log:
            history = fit(
                model,
                train_split,
                cfg.train,
                val=val_split,
                resume_file=resume,
                fingerprint=fingerprint,
                on_epoch=log,
                runtime=runtime,
            )
        save_checkpoint(
            outputs.path(out),
            Checkpoint(
                arch=cfg.model.arch,
                model_kwargs=cfg.model.kwargs,
                state_dict=model.state_dict(),
                meta={"stage": "train", "epochs": epochs, "seed": cfg.train.seed},
            ),
        )
        last = history[-1] if history else None
        outputs.write_json(
            metrics,
            {
                "epochs": len(history),
                "train_loss": round(last.train_loss, 6) if last else None,
                "train_acc": round(last.train_acc, 6) if last else None,
                "val_acc": round(last.val_acc, 6) if last and last.val_acc is not None else None,
                "train_images": len(train_split),
                "seconds": round(sum(r.seconds for r in history), 1),  # wall clock: varies run to run
                "provenance": provenance(*runtime, epochs),
            },
        )
    done("trained", out, metrics, live)


app = single_command_app(main)
