from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from prunelab.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from prunelab.commands import finetune, prune
from prunelab.models import build_model
from tests.conftest import write_params


def _baseline(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    kwargs = {"widths": [8, 16], "stem": 8}
    path = tmp_path / "baseline.pt"
    save_checkpoint(path, Checkpoint("cnn", kwargs, build_model("cnn", kwargs).state_dict()))
    return path


def _invoke(app, *args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


def test_zero_epochs_pass_the_pruned_model_through(tmp_path: Path, data_dir: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"finetune": {"epochs": 0}})
    _invoke(
        prune.app,
        "--params",
        str(params),
        "--model",
        str(_baseline(tmp_path)),
        "--out",
        str(tmp_path / "p.pt"),
        "--metrics",
        str(tmp_path / "p.json"),
    )
    _invoke(
        finetune.app,
        "--params",
        str(params),
        "--model",
        str(tmp_path / "p.pt"),
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "f.pt"),
        "--metrics",
        str(tmp_path / "f.json"),
        "--live",
        str(tmp_path / "live"),
    )
    pruned, tuned = load_checkpoint(tmp_path / "p.pt"), load_checkpoint(tmp_path / "f.pt")
    assert all(torch.equal(pruned.state_dict[k], tuned.state_dict[k]) for k in pruned.state_dict)
    assert json.loads((tmp_path / "f.json").read_text())["epochs"] == 0


def test_gradual_pruning_with_finetuning_between_steps_is_exact(tmp_path: Path, data_dir: Path) -> None:
    overrides = {
        "prune": {
            "method": "global_unstructured",
            "amount": 0.9,
            "targets": ["all"],
            "schedule": "agp",
            "steps": 3,
            "finetune_between": 1,
        },
        "finetune": {"epochs": 1},
    }
    params = write_params(tmp_path / "params.yaml", overrides)
    _invoke(
        prune.app,
        "--params",
        str(params),
        "--model",
        str(_baseline(tmp_path)),
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "p.pt"),
        "--metrics",
        str(tmp_path / "p.json"),
    )
    _invoke(
        finetune.app,
        "--params",
        str(params),
        "--model",
        str(tmp_path / "p.pt"),
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "f.pt"),
        "--metrics",
        str(tmp_path / "f.json"),
        "--live",
        str(tmp_path / "live"),
    )
    pruned = load_checkpoint(tmp_path / "p.pt")
    total = sum(m.numel() for m in pruned.masks.values())
    zeros = sum(int((pruned.state_dict[k] == 0).sum()) for k in pruned.masks)
    assert zeros == round(0.9 * total)
    metrics = json.loads((tmp_path / "f.json").read_text())
    assert metrics["epochs"] == 1 and metrics["pruned_weights_nonzero"] == 0
    tuned = load_checkpoint(tmp_path / "f.pt")
    assert sum(int((tuned.state_dict[k] == 0).sum()) for k in tuned.masks) == zeros
