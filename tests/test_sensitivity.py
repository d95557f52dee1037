from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from prunelab.checkpoints import Checkpoint, save_checkpoint
from prunelab.commands import sensitivity as sensitivity_cmd
from prunelab.comparison.sensitivity import (
    analyse,
    analysis_units,
    compare_with_uniform,
    derive_amounts,
    layer_curves,
)
from prunelab.coupling import coupled_conv_groups
from prunelab.models import build_model
from prunelab.params import PruneParams, SensitivityParams
from prunelab.pruning_run import with_derived_amounts
from tests.conftest import write_params


def _score_by_zeros(model: torch.nn.Module) -> float:
    """A stand-in 'accuracy' that falls as weights are zeroed, so tests need no data."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    return 1 - sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_residual_convs_are_analysed_as_one_group() -> None:
    model = build_model("resnet20", {"width": 8})
    groups = coupled_conv_groups(model)
    stage1 = next(g for g in groups if "conv1" in g)
    # the stem and every block output of stage 1 add into the same residual stream
    assert {"conv1", "layers.0.conv2", "layers.1.conv2", "layers.2.conv2"} <= set(stage1)
    assert ["layers.0.conv1"] in groups  # a block's inner conv is free
    assert sum(len(g) for g in groups) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def test_structured_units_skip_the_classifier_unstructured_ones_do_not() -> None:
    model = build_model("cnn", {"widths": [8, 16], "stem": 8})
    assert all("fc" not in unit for unit in analysis_units(model, "ln_structured"))
    assert ["fc"] in analysis_units(model, "l1_unstructured")


def test_curves_derivation_and_uniform_comparison() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", {"widths": [8, 16], "stem": 8, "identity_init": False})  # dense weights
    curves = layer_curves(model, PruneParams(), "l1_unstructured", [0.25, 0.5], _score_by_zeros)
    assert set(curves) == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc"}
    assert all(c["0.25"] > c["0.5"] for c in curves.values())
    derived = derive_amounts(curves, reference=1.0, budget=0.02)
    big = max(curves, key=lambda u: curves[u]["0.5"])  # the layer whose pruning matters least
    assert derived[big] == 0.5 and min(derived.values()) == 0.0
    comparison = compare_with_uniform(model, PruneParams(), "l1_unstructured", derived, _score_by_zeros)
    assert abs(comparison.sparsity - comparison.uniform_sparsity) < 0.01  # same sparsity, counted
    assert 0 < comparison.val_acc <= 1 and 0 < comparison.uniform_val_acc <= 1


def test_prune_can_use_the_derived_amounts() -> None:
    summary = {
        "methods": {"ln_structured": {"derived": {"per_layer": {"conv1": 0.5, "conv2": 0.0, "conv3": 0.25}}}}
    }
    cfg = with_derived_amounts(PruneParams(per_layer="from_sensitivity"), summary)
    assert cfg.per_layer == {"conv1": 0.5, "conv3": 0.25} and cfg.targets == ["conv1", "conv3"]


def test_gradient_criteria_get_gradients_computed_once(data_dir: Path, tmp_path: Path) -> None:
    """group_taylor in sensitivity.methods: the stage loads training images for its gradients,
    and every per-layer pruning reuses them (all are one-shot copies of the same model)."""
    calls = []

    def gradients(model: torch.nn.Module) -> None:
        calls.append(1)
        for p in model.parameters():
            p.grad = torch.ones_like(p)

    torch.manual_seed(0)
    model = build_model("cnn", {"widths": [8, 16], "stem": 8, "identity_init": False})
    cfg = SensitivityParams(methods=["group_taylor"], amounts=[0.25, 0.5])
    analysis = analyse(model, PruneParams(), cfg, _score_by_zeros, gradients)
    assert len(analysis["methods"]["group_taylor"]["curves"]) == 5 and len(calls) == 1

    kwargs = {"widths": [8, 16], "stem": 8}
    save_checkpoint(tmp_path / "b.pt", Checkpoint("cnn", kwargs, build_model("cnn", kwargs).state_dict()))
    params = write_params(
        tmp_path / "params.yaml",
        {"sensitivity": {"methods": ["group_taylor"], "amounts": [0.5], "val_images": 50}},
    )
    result = CliRunner().invoke(
        sensitivity_cmd.app,
        [
            "--params",
            str(params),
            "--model",
            str(tmp_path / "b.pt"),
            "--data",
            str(data_dir),
            "--metrics",
            str(tmp_path / "s.json"),
            "--plots",
            str(tmp_path / "plots"),
            "--table",
            str(tmp_path / "s.md"),
            "--png",
            str(tmp_path / "s.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "group_taylor" in json.loads((tmp_path / "s.json").read_text())["methods"]
