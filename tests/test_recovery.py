"""Recovery after pruning (BatchNorm recalibration, budgeted fine-tuning, learning-rate
rewinding), the controls (random floor, scratch), and the sweep points that score each side by
side, at amounts or at cost targets."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import prunelab.comparison.recovery
import prunelab.comparison.sweep
from prunelab.compact import compact_form, compacted_macs, expand_into
from prunelab.comparison.controls import random_floor_masks, train_from_scratch
from prunelab.comparison.recovery import budgeted, fine_tune, fit_masked, recalibrate_batchnorm, rewind_lr
from prunelab.comparison.sweep import score_point
from prunelab.cost_search import amount_for_cost
from prunelab.coupling import zero_out_channels
from prunelab.data import normalize, train_and_validation
from prunelab.device import resolve_device
from prunelab.errors import UserError
from prunelab.measure import count_macs
from prunelab.models import build_model
from prunelab.params import Params, ParamsError, cost_target, parse_params
from prunelab.predict import split_accuracy
from prunelab.pruning import apply_masks, prune_model
from prunelab.report import sweep_plot_rows, sweep_table_markdown
from prunelab.train import Distillation, distillation_loss, fit, lr_at
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
    fine_tune(net, train, result.masks, params.train, params.finetune, epochs=1, seed=3, tolerance=1e-3)
    weights = dict(net.named_parameters())
    assert all(int((weights[n].detach()[~m] != 0).sum()) == 0 for n, m in result.masks.items())
    assert split_accuracy(net, val, batch_size=100, device=CPU, dtype=torch.float32) > 0.2


def _pruned_for_one_epoch(trained, data_dir: Path, method: str):
    """The training and validation splits, a copy of the baseline pruned by `method` at 0.5 over
    every conv, its pruning result, and one epoch of fine-tuning's settings."""
    model, params = trained
    train, val = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    net = copy.deepcopy(model)
    result = prune_model(net, params.prune.one_shot(method, 0.5, ["Conv2d"]))
    return train, val, net, result, params.finetune.train_params(params.train, epochs=1)


def test_fine_tuning_in_compacted_form_equals_fine_tuning_the_masked_model(trained, data_dir: Path) -> None:
    train, val, net, result, cfg = _pruned_for_one_epoch(trained, data_dir, "ln_structured")
    masked, compacted = copy.deepcopy(net), copy.deepcopy(net)
    fit(masked, train, cfg, masks=result.masks)
    # every zero channel removed (the test model's widths, 8 and 16, are too narrow to round)
    form = compact_form(compacted, result.masks, train.images[:64], 1e-3, multiple_of=1)
    assert form is not None and count_macs(form.model) < count_macs(net) / 2
    assert not form.masks  # every pruned weight left with its channel
    untouched = copy.deepcopy(compacted)
    expand_into(form, untouched)  # the way back, before training, changes nothing
    assert all(
        torch.equal(a, b)
        for a, b in zip(untouched.state_dict().values(), net.state_dict().values(), strict=True)
    )
    fit(form.model, train, cfg, masks=form.masks)
    expand_into(form, compacted)
    x = normalize(val.images)
    with torch.no_grad():
        expected, got = masked.eval()(x), compacted.eval()(x)
    assert (expected - got).abs().max() < 1e-3 * expected.abs().max()
    assert not torch.equal(got, net.eval()(x))  # it did train
    weights = dict(compacted.named_parameters())
    assert all(int((weights[n].detach()[~m] != 0).sum()) == 0 for n, m in result.masks.items())
    # the library call used by the finetune stage trains the masked model where no width can be
    # rounded to a multiple of 16: as the masked model, bit for bit
    via_library = copy.deepcopy(net)
    fit_masked(via_library, train, cfg, result.masks, tolerance=1e-3)
    assert all(
        torch.equal(a, b)
        for a, b in zip(via_library.state_dict().values(), masked.state_dict().values(), strict=True)
    )


def test_the_compacted_twin_keeps_widths_a_multiple_of_16_and_masks_the_zeros_it_keeps(
    trained, data_dir: Path
) -> None:
    """A width off a multiple of 16 falls off PyTorch's fast CPU BatchNorm backward
    (compact.TRAINING_WIDTH_MULTIPLE): the twin removes the fewest zero channels that leave each
    width a multiple, keeps the rest masked, and trains as the masked model does."""
    _, params = trained
    train, val = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    torch.manual_seed(0)
    net = build_model("cnn", {"widths": [32, 48], "stem": 40})
    result = prune_model(net, params.prune.one_shot("ln_structured", 0.3, ["Conv2d"]))
    zeros = {
        name: len(zero_out_channels(m.weight)) for name, m in net.named_modules() if isinstance(m, nn.Conv2d)
    }
    form = compact_form(copy.deepcopy(net), result.masks, train.images[:64], 1e-3)
    assert form is not None
    convs = {name: m for name, m in form.model.named_modules() if isinstance(m, nn.Conv2d)}
    dense = {name: m.out_channels for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    for name, conv in convs.items():
        rounded = -(-(dense[name] - zeros[name]) // 16) * 16  # the width left, rounded up
        assert conv.out_channels == min(dense[name], rounded), name
    assert any(conv.out_channels < dense[name] for name, conv in convs.items())  # it did compact
    assert any(dense[name] - zeros[name] < conv.out_channels for name, conv in convs.items())  # and round
    assert form.masks  # the zero channels it kept stay masked while it trains
    cfg = params.finetune.train_params(params.train, epochs=1)
    masked = copy.deepcopy(net)
    fit(masked, train, cfg, masks=result.masks)
    fit(form.model, train, cfg, masks=form.masks)
    compacted = copy.deepcopy(net)
    expand_into(form, compacted)
    x = normalize(val.images)
    with torch.no_grad():
        expected, got = masked.eval()(x), compacted.eval()(x)
    assert (expected - got).abs().max() < 1e-3 * expected.abs().max()
    weights = dict(compacted.named_parameters())
    assert all(int((weights[n].detach()[~m] != 0).sum()) == 0 for n, m in result.masks.items())


def test_compacted_form_keeps_the_masks_compaction_cannot_remove(trained) -> None:
    model, params = trained
    net = copy.deepcopy(model)
    structured = prune_model(net, params.prune.one_shot("ln_structured", 0.5, ["conv1"]))
    unstructured = prune_model(net, params.prune.one_shot("l1_unstructured", 0.3, ["conv2"]))
    masks = {**structured.masks, **unstructured.masks}
    form = compact_form(net, masks, torch.zeros(8, 3, 32, 32, dtype=torch.uint8), 1e-3, multiple_of=1)
    assert form is not None and set(form.masks) == {"conv2.weight"}
    # conv2 lost the input channels conv1 lost; its zeros left are the unstructured ones that remain
    kept = dict(form.model.named_parameters())["conv2.weight"]
    assert torch.equal(form.masks["conv2.weight"], kept.detach() != 0)
    assert int((~form.masks["conv2.weight"]).sum()) > 0


def test_a_fraction_of_an_epoch_is_one_pass_over_that_fraction_of_the_images(trained, data_dir: Path) -> None:
    _, params = trained
    train, _ = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    quarter, epochs = budgeted(train, 0.25, seed=3)
    assert epochs == 1 and len(quarter) == round(len(train) / 4)
    again, _ = budgeted(train, 0.25, seed=3)
    other, _ = budgeted(train, 0.25, seed=4)
    assert torch.equal(quarter.labels, again.labels) and not torch.equal(quarter.images, other.images)
    assert budgeted(train, 2, seed=3) == (train, 2)
    assert parse_params({"sweep": {"finetune_epochs": 0.25}}).sweep.finetune_epochs == 0.25
    assert parse_params({"sweep": {"finetune_epochs": 2.0}}).sweep.finetune_epochs == 2
    with pytest.raises(ParamsError, match=r"sweep.finetune_epochs.*whole number, or a fraction below 1"):
        parse_params({"sweep": {"finetune_epochs": 1.5}})


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
    ).metrics
    assert list(point["recovery"]) == ["none", "bn_recalibration", "finetune"]
    # deterministic masks: one-shot and recalibrated scores once; fine-tuning once per seed
    assert list(point["recovery"]["none"]["val_acc_by_seed"]) == ["0"]
    assert list(point["recovery"]["bn_recalibration"]["val_acc_by_seed"]) == ["0"]
    assert list(point["recovery"]["finetune"]["val_acc_by_seed"]) == ["0", "1"]
    # its random floor: random masks, so every recovery once per seed
    assert list(point["random_floor"]) == ["none", "bn_recalibration", "finetune"]
    assert all(list(r["val_acc_by_seed"]) == ["0", "1"] for r in point["random_floor"].values())
    assert point["macs_compact"] < point["macs"] and point["macs_speedup"] > 1.5
    assert {"latency_speedup_b1", "latency_speedup_b8"} <= set(point)  # TINY's latency batch sizes
    assert point["compression"] > 1.5
    json.dumps(point, allow_nan=False)
    assert point["point"] == point["amount"] == 0.5
    table = sweep_table_markdown([point], [0.5], 0.9)
    assert table.count("| ln_structured |") == 4 and "after fine-tuning" in table
    rows = sweep_plot_rows([point])
    assert [r["recovery"] for r in rows] == ["none", "bn_recalibration", "finetune"]


def test_a_taylor_sweep_point_prunes_once_with_gradients_from_training_images(
    trained, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, base = trained
    params = base.model_copy(
        update={
            "prune": base.prune.model_copy(update={"gradient_images": 64}),
            "sweep": base.sweep.model_copy(
                update={"recovery": ["bn_recalibration"], "recalibration_images": 64, "seeds": [0, 1]}
            ),
        }
    )
    train, val = train_and_validation(data_dir, params.data.val_size, params.data.split_seed, 100)
    gradient_passes = []
    real = prunelab.comparison.sweep.loss_gradients

    def counting(*args, **kwargs):
        fill = real(*args, **kwargs)
        return lambda net: (gradient_passes.append(1), fill(net))

    monkeypatch.setattr(prunelab.comparison.sweep, "loss_gradients", counting)

    def load() -> torch.nn.Module:
        net = build_model(params.model.arch, params.model.kwargs)
        net.load_state_dict(model.state_dict())
        return net

    point = score_point(
        load, params, "group_taylor", "2x", train, val, device=CPU, dtype=torch.float32
    ).metrics
    assert point["macs_speedup"] >= 2.0 and 0 < point["amount"] < 0.9
    assert list(point["random_floor"]["bn_recalibration"]["val_acc_by_seed"]) == ["0", "1"]
    # the search's trials and the point's own pruning share one gradient pass
    assert len(gradient_passes) == 1


def test_recovery_list_is_validated() -> None:
    with pytest.raises(ParamsError, match=r"sweep.recovery.1 = 'bn'"):
        parse_params({"sweep": {"recovery": ["none", "bn"]}})
    with pytest.raises(ParamsError, match="list each recovery once"):
        parse_params({"sweep": {"recovery": ["none", "none"]}})


def test_cost_target_points_meet_their_target_at_the_smallest_amount(trained, data_dir: Path) -> None:
    model, base = trained
    params = base.model_copy(
        update={
            "sweep": base.sweep.model_copy(update={"seeds": [0], "random_floor": False, "recovery": ["none"]})
        }
    )
    train, val = train_and_validation(data_dir, params.data.val_size, params.data.split_seed, 100)

    def load() -> torch.nn.Module:
        net = build_model(params.model.arch, params.model.kwargs)
        net.load_state_dict(model.state_dict())
        return net

    for method, cost in (("group_lamp", "macs_speedup"), ("global_unstructured", "compression")):
        point = score_point(load, params, method, "2x", train, val, device=CPU, dtype=torch.float32).metrics
        assert point["point"] == "2x" and point[cost] >= 2.0
        # one step of the search less does not reach it
        cfg = params.sweep.prune_params(params.prune, method, point["amount"] - 1 / 512, 0)
        smaller = load()
        prune_model(smaller, cfg)
        ratio = (
            compacted_ratio(load(), smaller)
            if cost == "macs_speedup"
            else sum(p.numel() for p in smaller.parameters())
            / sum(int(p.count_nonzero()) for p in smaller.parameters())
        )
        assert ratio < 2.0
    # unstructured methods are held to compression, which zeros inside a tensor do reach
    assert point["macs_speedup"] == 1.0


def compacted_ratio(dense: torch.nn.Module, pruned: torch.nn.Module) -> float:
    return count_macs(dense) / compacted_macs(pruned)


def test_unreachable_or_unmeasurable_cost_targets_are_clear_errors(trained) -> None:
    model, params = trained
    cfg = params.sweep.prune_params(params.prune, "ln_structured", 0.0, 0)
    with pytest.raises(
        UserError, match=r"sweep.points 50x .*gives only .*× fewer MACs once compacted, not 50×"
    ):
        amount_for_cost(model, cfg, 50, "sweep.points 50x (ln_structured)")
    with pytest.raises(UserError, match=r"prune\.dim = 1 removes none"):
        amount_for_cost(model, cfg.model_copy(update={"dim": 1}), 2, "sweep.points 2x")


@pytest.mark.parametrize("bad", ["1x", "0.5x", "x", "2X", "fast", 1.5, -1])
def test_sweep_points_are_validated(bad: object) -> None:
    with pytest.raises(ParamsError, match=r"sweep.points.0"):
        parse_params({"sweep": {"points": [bad]}})


def test_sweep_points_accept_amounts_counts_and_cost_targets() -> None:
    assert parse_params({"sweep": {"points": [0.3, 5, "1.5x", "4x"]}}).sweep.points == [0.3, 5, "1.5x", "4x"]
    assert cost_target("1.5x") == 1.5 and cost_target(0.5) is None


def test_random_floor_keeps_each_layers_counts_and_randomises_the_units(trained) -> None:
    model, params = trained
    for method, unit in (("l1_unstructured", "weight"), ("ln_structured", "channel")):
        net = copy.deepcopy(model)
        result = prune_model(net, params.prune.one_shot(method, 0.5, ["Conv2d"]))
        floors = [
            random_floor_masks(copy.deepcopy(model), result, unit, torch.Generator().manual_seed(s))
            for s in (0, 1)
        ]
        for floor in floors:
            assert set(floor) == set(result.masks)  # BatchNorm channels included for channels
            for name, keep in result.masks.items():
                assert int((~floor[name]).sum()) == int((~keep).sum()), name
        assert any(not torch.equal(floors[0][n], floors[1][n]) for n in result.masks)  # seeded
        assert any(not torch.equal(floors[0][n], result.masks[n]) for n in result.masks)
    # channel floors remove as many MACs as the criterion once compacted
    control = copy.deepcopy(model)
    apply_masks(control, floors[1])
    assert compacted_macs(control) == compacted_macs(net)


def test_random_floor_prunes_the_same_channels_of_coupled_convs() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", {"width": 8}).eval()
    params = parse_params({"model": {"arch": "resnet20", "kwargs": {"width": 8}}})
    net = copy.deepcopy(model)
    result = prune_model(net, params.prune.one_shot("group_l2", 0.5, ["Conv2d"], scope="global"))
    floor = random_floor_masks(model, result, "channel", torch.Generator().manual_seed(0))
    control = copy.deepcopy(model)
    apply_masks(control, floor)
    # residual-coupled convs lose the same channels, so compaction removes them all
    assert compacted_macs(control) == compacted_macs(net) < count_macs(model)


def _rewound(trained, data_dir: Path, monkeypatch: pytest.MonkeyPatch, **train: object):
    """What one epoch of lr rewinding passes to fit, with train.* updated as given; and the
    steps of an epoch."""
    model, params = trained
    split, _ = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    seen: dict[str, object] = {}

    def record(net, split, cfg, *, masks, label, lr_schedule, runtime):
        seen.update(cfg=cfg, masks=masks, schedule=lr_schedule)

    monkeypatch.setattr(prunelab.comparison.recovery, "fit", record)
    cfg = params.train.model_copy(update=train)
    rewind_lr(model, split, {"w": torch.ones(1)}, cfg, epochs=1, seed=7, tolerance=1e-3)
    return seen, cfg, math.ceil(len(split) / cfg.batch_size)


def test_lr_rewinding_trains_at_the_last_learning_rates_of_the_baseline_schedule(
    trained, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, cfg, per_epoch = _rewound(trained, data_dir, monkeypatch, epochs=4, warmup=0.25)
    schedule = seen["schedule"]
    assert seen["cfg"].epochs == 1 and seen["cfg"].seed == 7 and seen["masks"] == {"w": torch.ones(1)}
    # step 0 of the rewound epoch is step 3 × per_epoch of the 4-epoch schedule; it ends at 0
    assert schedule(0, per_epoch) == pytest.approx(lr_at(3 * per_epoch, 4 * per_epoch, cfg.lr, 0.25))
    assert schedule(0, per_epoch) < cfg.lr / 2
    assert schedule(per_epoch - 1, per_epoch) == pytest.approx(
        lr_at(4 * per_epoch - 1, 4 * per_epoch, cfg.lr, 0.25)
    )


def test_lr_rewinding_reads_the_epochs_auto_trained(
    trained, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, cfg, per_epoch = _rewound(
        trained, data_dir, monkeypatch, epochs="auto", precision="fp32", warmup=0.25
    )
    # fp32 trains 6 epochs under `auto`: the rewound epoch is the 6th of that schedule
    assert seen["schedule"](0, per_epoch) == pytest.approx(lr_at(5 * per_epoch, 6 * per_epoch, cfg.lr, 0.25))


def test_scratch_trains_the_pruned_architecture_from_a_fresh_init(trained, data_dir: Path) -> None:
    model, base = trained
    params = base.model_copy(update={"train": base.train.model_copy(update={"epochs": 1})})
    train, _ = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    structured = copy.deepcopy(model)
    result = prune_model(structured, params.prune.one_shot("ln_structured", 0.5, ["Conv2d"]))
    scratch = train_from_scratch(structured, result, "channel", train, params, seed=3)
    assert count_macs(scratch) == compacted_macs(structured) < count_macs(model)  # compacted shapes
    unstructured = copy.deepcopy(model)
    result = prune_model(unstructured, params.prune.one_shot("l1_unstructured", 0.5, ["Conv2d"]))
    scratch = train_from_scratch(unstructured, result, "weight", train, params, seed=3)
    weights = dict(scratch.named_parameters())
    for name, keep in result.masks.items():
        assert int(weights[name].detach()[~keep].count_nonzero()) == 0  # masks held
        assert not torch.equal(
            weights[name].detach()[keep], dict(unstructured.named_parameters())[name].detach()[keep]
        )


def test_distillation_at_weight_zero_is_plain_fine_tuning_bit_for_bit(trained, data_dir: Path) -> None:
    model, _ = trained
    train, _, net, result, cfg = _pruned_for_one_epoch(trained, data_dir, "l1_unstructured")
    plain, distilled = copy.deepcopy(net), copy.deepcopy(net)
    fit(plain, train, cfg, masks=result.masks)
    fit(distilled, train, cfg, masks=result.masks, distill=Distillation(copy.deepcopy(model), 0.0, 4.0))
    assert all(
        torch.equal(a, b)
        for a, b in zip(plain.state_dict().values(), distilled.state_dict().values(), strict=True)
    )


def test_distillation_loss_is_the_hand_computed_one() -> None:
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1])
    weight, temperature, smoothing = 0.25, 2.0, 0.1

    def softmax(row: list[float], t: float = 1.0) -> list[float]:
        e = [math.exp(v / t) for v in row]
        return [v / sum(e) for v in e]

    hard = soft = 0.0
    for s, t, y in zip(student.tolist(), teacher.tolist(), labels.tolist(), strict=True):
        p = softmax(s)
        target = [smoothing / 3 + (1 - smoothing) * (k == y) for k in range(3)]  # label smoothing
        hard += -sum(q * math.log(pk) for q, pk in zip(target, p, strict=True)) / 2
        ps, pt = softmax(s, temperature), softmax(t, temperature)
        soft += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True)) / 2  # KL(teacher ‖ student)
    expected = (1 - weight) * hard + weight * temperature**2 * soft
    got = distillation_loss(
        student, teacher, labels, weight=weight, temperature=temperature, label_smoothing=smoothing
    )
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_the_teacher_never_trains_and_masks_hold_under_distillation(trained, data_dir: Path) -> None:
    model, params = trained
    train, val = train_and_validation(data_dir, params.data.val_size, params.data.split_seed)
    net = copy.deepcopy(model)
    result = prune_model(net, params.prune.one_shot("ln_structured", 0.5, ["Conv2d"]))
    teacher = copy.deepcopy(model).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plain = copy.deepcopy(net)
    fine_tune(plain, train, result.masks, params.train, params.finetune, epochs=1, seed=3, tolerance=1e-3)
    finetune = params.finetune.model_copy(update={"kd_weight": 0.7})
    fine_tune(
        net, train, result.masks, params.train, finetune, epochs=1, seed=3, tolerance=1e-3, teacher=teacher
    )
    assert not teacher.training and all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN statistics too
    weights = dict(net.named_parameters())
    assert all(int((weights[n].detach()[~m] != 0).sum()) == 0 for n, m in result.masks.items())
    x = normalize(val.images)
    with torch.no_grad():
        assert not torch.equal(net.eval()(x), plain.eval()(x))  # the teacher did change the training


def test_distill_without_a_weight_and_a_baseline_as_its_own_replicate_are_clear_errors() -> None:
    with pytest.raises(ParamsError, match=r"distill but finetune.kd_weight is 0.*set finetune.kd_weight"):
        parse_params({"sweep": {"recovery": ["none", "distill"]}})
    with pytest.raises(ParamsError, match=r"sweep.replicates lists train.seed 0, the baseline itself"):
        parse_params({"sweep": {"replicates": [0, 1]}})
    with pytest.raises(ParamsError, match=r"finetune.kd_weight"):
        parse_params({"finetune": {"kd_weight": 1.5}})
    assert (
        parse_params({"finetune": {"kd_weight": 0.5}, "sweep": {"recovery": ["distill"]}}).finetune.kd_weight
        == 0.5
    )
