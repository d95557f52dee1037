"""prune: prune a checkpoint as params.yaml's `prune` section says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.io import Checkpoint, load_checkpoint, load_state_into, save_checkpoint, write_json
from prunelab.measure import sparsity_report
from prunelab.models import build_model
from prunelab.params import load_params
from prunelab.prune import prune_model


def main(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="checkpoint to prune")] = Path("models/baseline.pt"),
    out: Annotated[Path, typer.Option(help="pruned checkpoint to write")] = Path("models/pruned.pt"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/prune.json"),
) -> None:
    """Prune the model; the saved weights have the pruning made permanent and the masks recorded."""
    cfg = load_params(params)
    ckpt = load_checkpoint(model)
    net = build_model(ckpt.arch, ckpt.model_kwargs)
    load_state_into(net, ckpt.state_dict, str(model))
    before = sparsity_report(net)
    result = prune_model(net, cfg.prune)
    after = sparsity_report(net)
    save_checkpoint(
        out,
        Checkpoint(
            arch=ckpt.arch,
            model_kwargs=ckpt.model_kwargs,
            state_dict=net.state_dict(),
            masks=result.masks,
            meta={**ckpt.meta, "stage": "prune", "prune": cfg.prune.model_dump()},
        ),
    )
    write_json(
        metrics,
        {
            "method": cfg.prune.method,
            "amount": cfg.prune.amount,
            "sparsity": after["sparsity"],
            "params": after["params"],
            "params_nonzero": after["params_nonzero"],
            "params_zeroed": after["params_zero"] - before["params_zero"],
            "targeted_sparsity": _targeted_sparsity(result.masks),
            "layers": after["layers"],
        },
    )
    done(f"pruned with {cfg.prune.method} (amount {cfg.prune.amount})", out, metrics)


def _targeted_sparsity(masks: dict) -> float:
    total = sum(m.numel() for m in masks.values())
    return round(sum(int((~m).sum()) for m in masks.values()) / max(1, total), 6)


app = single_command_app(main)
