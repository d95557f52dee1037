"""Dependency-aware structured pruning with Torch-Pruning's criteria (the group_* methods)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelab.compact import max_output_difference, remove_zero_channels
from prunelab.cost_search import amount_for_cost
from prunelab.criteria import CRITERIA
from prunelab.data import Split
from prunelab.device import CPU
from prunelab.errors import UserError
from prunelab.measure import count_macs
from prunelab.methods import METHODS, check_prune_params
from prunelab.models import build_model
from prunelab.params import PruneParams
from prunelab.pruning import prune_model
from prunelab.train import loss_gradients

WIDE = {"widths": [16, 32], "stem": 16, "identity_init": False}


def make(arch: str = "cnn", kwargs: dict | None = None) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch, kwargs or WIDE).eval()


def random_gradients(images: int = 32):
    """Loss gradients on random images and labels (what group_taylor needs)."""
    generator = torch.Generator().manual_seed(0)
    split = Split(
        torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (images,), generator=generator),
    )
    return loss_gradients(split, images, batch_size=16, device=CPU, dtype=torch.float32)


def kept_filters(model: nn.Module) -> dict[str, int]:
    return {
        name: int(m.weight.detach().flatten(1).any(1).sum())
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def test_every_criterion_is_in_the_registry_as_a_channel_method() -> None:
    assert set(CRITERIA) <= set(METHODS)
    assert {
        "group_l1",
        "group_l2",
        "group_bn_scale",
        "group_lamp",
        "group_fpgm",
        "group_taylor",
        "group_random",
    } <= set(CRITERIA)
    assert [name for name in CRITERIA if METHODS[name].needs_gradients] == ["group_taylor"]
    assert all(METHODS[name].unit == "channel" and METHODS[name].reach == "groups" for name in CRITERIA)
    assert METHODS["group_random"].stochastic(PruneParams()) and not METHODS["group_l1"].stochastic(
        PruneParams()
    )


@pytest.mark.parametrize("method", sorted(CRITERIA))
def test_local_scope_prunes_the_same_fraction_of_every_group_and_compacts_exactly(method: str) -> None:
    model = make()
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    # trained-looking BatchNorm scales, so that group_bn_scale has something to rank
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.1, 1.0)
    prune_model(
        model, PruneParams(method=method, amount=0.5, targets=["Conv2d"]), gradients=random_gradients()
    )
    assert kept_filters(model) == {"conv1": 8, "conv2": 8, "conv3": 8, "conv4": 16, "conv5": 16}
    small = copy.deepcopy(model)
    remove_zero_channels(small)
    assert max_output_difference(model, small, images) < 1e-4  # coupled BatchNorm masked too
    assert count_macs(small) < count_macs(make())


@pytest.mark.parametrize("method", ["group_l2", "group_taylor"])
def test_airbench_net_prunes_to_a_macs_target_and_compacts_exactly(method: str) -> None:
    """Its stem has a bias and no BatchNorm, its head max-pools and scales the logits."""
    kwargs = {"widths": [16, 32], "stem": 12}
    model = make("airbench", kwargs)
    cfg = PruneParams(method=method, targets=["Conv2d"])
    gradients = random_gradients()
    amount = amount_for_cost(model, cfg, 2.0, "test", gradients)
    prune_model(model, cfg.model_copy(update={"amount": amount}), gradients=gradients)
    small = copy.deepcopy(model)
    remove_zero_channels(small)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    assert max_output_difference(model, small, images) < 1e-4
    assert count_macs(small) <= count_macs(make("airbench", kwargs)) / 2 * 1.05


def test_bn_scale_criterion_refuses_a_model_whose_scales_are_all_equal() -> None:
    model = make()  # untrained, as after train.bn_scale: false: every scale is 1
    with pytest.raises(UserError, match=r"prune.method = 'group_bn_scale'.*train.bn_scale"):
        prune_model(model, PruneParams(method="group_bn_scale", amount=0.5, targets=["Conv2d"]))


def test_global_scope_gives_non_uniform_ratios_at_the_exact_total() -> None:
    model = make()
    with torch.no_grad():  # conv4: 4 channels that matter, 28 that hardly do, in their whole group
        model.conv4.weight[4:].mul_(0.001)
        model.bn4.weight[4:].mul_(0.001)
        model.conv5.weight[:, 4:].mul_(0.001)
    prune_model(model, PruneParams(method="group_l2", amount=0.25, targets=["Conv2d"], scope="global"))
    kept = kept_filters(model)
    total = 16 * 3 + 32 * 2
    assert total - sum(kept.values()) == round(0.25 * total)
    assert kept["conv4"] < 32 * 0.75 and min(kept.values()) >= 1
    assert len({kept[n] / c for n, c in (("conv1", 16), ("conv4", 32), ("conv5", 32))}) > 1


def test_global_scope_honours_round_to() -> None:
    model = make()
    prune_model(
        model, PruneParams(method="group_l1", amount=0.4, targets=["Conv2d"], scope="global", round_to=4)
    )
    assert all(k % 4 == 0 and k >= 4 for k in kept_filters(model).values())


def test_residual_groups_lose_the_same_channels_and_compact() -> None:
    model = make("resnet20", {"width": 8})
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    prune_model(model, PruneParams(method="group_fpgm", amount=0.5, targets=["Conv2d"], scope="global"))
    stage1 = [model.conv1, model.layers[0].conv2, model.layers[1].conv2, model.layers[2].conv2]
    zero_sets = [set((m.weight.flatten(1) == 0).all(1).nonzero().flatten().tolist()) for m in stage1]
    assert zero_sets[0] and all(z == zero_sets[0] for z in zero_sets)  # one residual stream
    small = copy.deepcopy(model)
    remove_zero_channels(small)
    assert max_output_difference(model, small, images) < 1e-4
    assert count_macs(small) < 0.8 * count_macs(make("resnet20", {"width": 8}))


def test_gradual_schedule_ends_exactly_and_keeps_earlier_channels_pruned() -> None:
    model = make()
    seen: list[set[int]] = []

    def record(step: int) -> None:
        w = model.conv2.weight.detach()
        seen.append(set((w.flatten(1) == 0).all(1).nonzero().flatten().tolist()))

    cfg = PruneParams(method="group_l1", amount=0.75, targets=["Conv2d"], schedule="agp", steps=3)
    prune_model(model, cfg, between_steps=record)
    final = set((model.conv2.weight.flatten(1) == 0).all(1).nonzero().flatten().tolist())
    assert len(final) == 12 and seen[0] <= seen[1] <= final and seen[0]


def test_group_random_follows_prune_seed() -> None:
    def pruned(seed: int) -> dict[str, int]:
        model = make()
        prune_model(model, PruneParams(method="group_random", amount=0.5, targets=["Conv2d"], seed=seed))
        return {
            n: tuple((m.weight.flatten(1) == 0).all(1).nonzero().flatten().tolist())
            for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d)
        }

    assert pruned(0) == pruned(0) and pruned(0) != pruned(1)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            PruneParams(scope="global"),
            r"prune.scope = global applies to the group_\* methods, not 'ln_structured'",
        ),
        (
            PruneParams(method="group_l1", dim=1),
            r"'group_l1' prunes output channels by groups: it takes prune.dim 0",
        ),
        (
            PruneParams(method="group_l1", per_layer={"conv1": 0.2}, scope="global"),
            "prune.per_layer: a global ranking sets the per-layer ratios itself",
        ),
    ],
)
def test_group_settings_that_do_not_apply_are_refused(cfg: PruneParams, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_prune_params(cfg)


def test_taylor_prunes_the_channels_the_loss_does_not_depend_on_however_large() -> None:
    model = make()
    with torch.no_grad():  # conv4's first 8 channels: the largest filters, but conv5 ignores them
        model.conv4.weight[:8].mul_(10)
        model.conv5.weight[:, :8] = 0
    ignored = set(range(8))

    def pruned(method: str) -> set[int]:
        net = copy.deepcopy(model)
        cfg = PruneParams(method=method, amount=0.25, targets=["conv4"])
        prune_model(net, cfg, gradients=random_gradients())
        return set((net.conv4.weight.flatten(1) == 0).all(1).nonzero().flatten().tolist())

    assert pruned("group_taylor") == ignored  # |w · ∂L/∂w| = 0: no gradient reaches them
    assert not pruned("group_l1") & ignored  # magnitude keeps them: their filters are largest


def test_taylor_without_gradients_is_a_clear_error() -> None:
    with pytest.raises(
        UserError, match="'group_taylor' scores channels with loss gradients on training images"
    ):
        prune_model(make(), PruneParams(method="group_taylor", amount=0.5, targets=["Conv2d"]))


def test_a_cost_search_computes_the_gradients_once() -> None:
    calls = []
    gradients = random_gradients()

    def counted(model: nn.Module) -> None:
        calls.append(1)
        gradients(model)

    cfg = PruneParams(method="group_taylor", targets=["Conv2d"])
    amount = amount_for_cost(make(), cfg, 2.0, "test", counted)
    assert 0 < amount < 0.9 and len(calls) == 1


def test_local_scope_takes_per_layer_amounts() -> None:
    model = make()
    cfg = PruneParams(method="group_l2", amount=0.5, targets=["conv1", "conv4"], per_layer={"conv4": 0.25})
    check_prune_params(cfg)
    prune_model(model, cfg)
    kept = kept_filters(model)
    assert (kept["conv1"], kept["conv4"]) == (8, 24)
