"""Recovery after pruning: BatchNorm recalibration and budgeted fine-tuning, and the sweep
points that score each side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunelab.data import normalize, train_and_validation
from prunelab.device import resolve_device
from prunelab.models import build_model
from prunelab.params import Params, ParamsError, parse_params
from prunelab.predict import split_accuracy
from prunelab.prune import prune_model
from prunelab.recovery import fine_tune, recalibrate_batchnorm
from prunelab.report import plot_rows, sweep_table_markdown
from prunelab.sweep import score_point
from prunelab.train import fit
from tests.conftest import TINY

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> tuple[torch.nn.Module, Params]:
    params = parse_params({**TINY, "train": {**TINY["train"], "epochs": 2, "precision": "fp32"}})
    train, _ = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    torch.manual_seed(0)
    model = build_model(params.model.arch, params.model.kwargs)
    fit(model, train, params.train)
    return model.eval(), params


def test_recalibration_reestimates_batchnorm_statistics_only(trained, data_dir: Path) -> None:
    model, params = trained
    train, _ = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    pruned = build_model(params.model.arch, params.model.kwargs)
    pruned.load_state_dict(model.state_dict())
    prune_model(pruned, params.prune.one_shot("random_unstructured", 0.5, ["Conv2d"]))
    weights = {k: v.clone() for k, v in pruned.state_dict().items() if "running" not in k}
    recalibrate_batchnorm(pruned, train.images[:256], batch_size=256, device=CPU, dtype=torch.float32)
    state = pruned.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items() if "num_batches" not in k)
    assert pruned.bn2.momentum == 0.1 and not pruned.training  # settings restored, eval mode
    # one batch of all 256 images: bn2's running mean is the mean of its input over them
    recalibrated = pruned.bn2.running_mean.clone()
    inputs = []
    hook = pruned.pool2.register_forward_hook(lambda m, i, o: inputs.append(o))
    with torch.no_grad():
        pruned.train()(normalize(train.images[:256]))
    hook.remove()
    assert torch.allclose(recalibrated, inputs[0].mean((0, 2, 3)), atol=1e-5)


def test_recovery_does_not_revive_pruned_weights(trained, data_dir: Path) -> None:
    model, params = trained
    train, val = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    net = build_model(params.model.arch, params.model.kwargs)
    net.load_state_dict(model.state_dict())
    result = prune_model(net, params.prune.one_shot("l1_unstructured", 0.6, ["Conv2d"]))
    fine_tune(net, train, result.masks, params.train, params.finetune, epochs=1, seed=3)
    weights = dict(net.named_parameters())
    assert all(int((weights[n].detach()[~m] != 0).sum()) == 0 for n, m in result.masks.items())
    assert split_accuracy(net, val, batch_size=100, device=CPU, dtype=torch.float32) > 0.2


def test_sweep_point_scores_every_recovery_side_by_side(trained, data_dir: Path) -> None:
    model, base = trained
    params = base.model_copy(
        update={
            "sweep": base.sweep.model_copy(
                update={
                    "recovery": ["none", "bn_recalibration", "finetune"],
                    "recalibration_images": 128,
                    "seeds": [0, 1],
                }
            )
        }
    )
    train, val = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)

    def load() -> torch.nn.Module:
        net = build_model(params.model.arch, params.model.kwargs)
        net.load_state_dict(model.state_dict())
        return net

    point = score_point(
        load, params, "ln_structured", 0.5, train, val, device=resolve_device("cpu"), dtype=torch.float32
    )
    assert list(point["recovery"]) == ["none", "bn_recalibration", "finetune"]
    # deterministic masks: one-shot and recalibrated scores once; fine-tuning once per seed
    assert list(point["recovery"]["none"]["val_acc_by_seed"]) == ["0"]
    assert list(point["recovery"]["bn_recalibration"]["val_acc_by_seed"]) == ["0"]
    assert list(point["recovery"]["finetune"]["val_acc_by_seed"]) == ["0", "1"]
    assert point["macs_compact"] < point["macs"] and point["macs_speedup"] > 1.5
    assert {"latency_speedup_b1", "latency_speedup_b8"} <= set(point)  # TINY's latency batch sizes
    assert point["compression"] > 1.5
    json.dumps(point, allow_nan=False)
    table = sweep_table_markdown([point], [0.5], 0.9)
    assert table.count("| ln_structured |") == 4 and "after fine-tuning" in table
    rows = plot_rows([point])
    assert [r["recovery"] for r in rows] == ["none", "bn_recalibration", "finetune"]


def test_recovery_list_is_validated() -> None:
    with pytest.raises(ParamsError, match=r"sweep.recovery.1 = 'bn'"):
        parse_params({"sweep": {"recovery": ["none", "bn"]}})
    with pytest.raises(ParamsError, match="list each recovery once"):
        parse_params({"sweep": {"recovery": ["none", "none"]}})
