"""compact: physically remove pruned channels, check the outputs did not change, export ONNX."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated

import typer

from prunelab.checkpoints import Checkpoint, file_digest, load_checkpoint, save_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.compact import all_removals, max_output_difference, remove_zero_channels
from prunelab.data import load_split
from prunelab.device import resolve_runtime
from prunelab.errors import UserError
from prunelab.io import staged_outputs
from prunelab.measure import count_macs
from prunelab.onnx_runtime import export_onnx
from prunelab.params import load_params
from prunelab.provenance import provenance


def main(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="pruned (fine-tuned) checkpoint")] = Path("models/finetuned.pt"),
    data: Annotated[Path, typer.Option(help="extracted CIFAR-10 directory")] = Path(
        "data/cifar-10-batches-py"
    ),
    out: Annotated[Path, typer.Option(help="compact checkpoint to write")] = Path("models/compact.pt"),
    onnx: Annotated[Path, typer.Option(help="ONNX export of the compact model")] = Path(
        "models/compact.onnx"
    ),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/compact.json"),
) -> None:
    """Remove whole zero channels (with their BatchNorm and the next layer's inputs) and check
    that the compact model's outputs equal the masked model's on real test images."""
    cfg = load_params(params)
    runtime = resolve_runtime(cfg.train.device, cfg.train.precision)
    ckpt = load_checkpoint(model)
    masked = load_model(ckpt, str(model)).eval()
    small = copy.deepcopy(masked)
    removed = remove_zero_channels(small)
    images = load_split(data, train=False).images[:256]
    difference = max_output_difference(masked, small, images, runtime.device)
    if difference > cfg.compact.tolerance:
        raise UserError(
            f"compact: outputs of the compact model differ from the masked model by {difference:.3g} "
            f"> compact.tolerance {cfg.compact.tolerance}; nothing was written. Were channels pruned "
            "without their BatchNorm (a checkpoint from another tool)? Re-prune with prunelab."
        )
    params_dense = sum(p.numel() for p in masked.parameters())
    params_compact = sum(p.numel() for p in small.parameters())
    with staged_outputs() as outputs:
        save_checkpoint(
            outputs.path(out),
            Checkpoint(
                ckpt.arch,
                ckpt.model_kwargs,
                small.state_dict(),
                {},
                {
                    **ckpt.meta,
                    "stage": "compact",
                    "removed_channels": all_removals(ckpt, removed),
                    # lets evaluate score the pair once (measure.compacted_twins)
                    "compacted_from": {"sha256": file_digest(model), "max_output_difference": difference},
                },
            ),
        )
        staged_onnx = outputs.path(onnx)
        export_onnx(small, staged_onnx)
        outputs.write_json(
            metrics,
            {
                "channels_removed": sum(len(v) for v in removed.values()),
                "layers": {name: len(idxs) for name, idxs in removed.items()},
                "params_dense": params_dense,
                "params_compact": params_compact,
                "macs_dense": count_macs(masked),
                "macs_compact": count_macs(small),
                "max_output_difference": difference,
                "onnx_bytes": staged_onnx.stat().st_size,
                "provenance": provenance(*runtime, ckpt.meta.get("epochs")),
            },
        )
    what = (
        f"removed {sum(len(v) for v in removed.values())} channels"
        if removed
        else "no whole channels to remove"
    )
    done(
        f"compact: {what}, {params_dense:,} → {params_compact:,} params, outputs equal (Δ {difference:.1e})",
        out,
        onnx,
        metrics,
    )


app = single_command_app(main)
