from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune as tprune
from torch import nn

from prunelab.errors import UserError
from prunelab.methods import METHODS, check_method_names, check_prune_params
from prunelab.models import build_model
from prunelab.params import ParamsError, PruneParams, parse_params
from prunelab.pruning import prune_model, select_targets

TINY_CNN = {"widths": [8, 16], "stem": 8, "identity_init": False}  # dense random weights: counts are exact


def make() -> nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", TINY_CNN)


def zeros(model: nn.Module, name: str) -> int:
    return int((dict(model.named_parameters())[name] == 0).sum())


def zero_filters(model: nn.Module, name: str) -> int:
    w = dict(model.named_parameters())[name]
    return int((w.flatten(1) == 0).all(1).sum())


def test_seed_experiment_prunes_40_percent_of_conv1_filters_by_l1() -> None:
    model = make()
    expected_order = model.conv1.weight.detach().abs().sum((1, 2, 3)).argsort()
    result = prune_model(model, PruneParams())  # the default: ln_structured n=1 dim=0 on conv1
    assert zero_filters(model, "conv1.weight") == round(0.4 * 8) == 3
    pruned = (model.conv1.weight.flatten(1) == 0).all(1).nonzero().flatten()
    assert set(pruned.tolist()) == set(expected_order[:3].tolist())  # the smallest-L1 filters
    assert result.masks["conv1.weight"].shape == model.conv1.weight.shape
    assert not hasattr(model.conv1, "weight_orig")  # made permanent


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize(
    ("method", "unit"),
    [
        ("l1_unstructured", "weight"),
        ("random_unstructured", "weight"),
        ("ln_structured", "channel"),
        ("random_structured", "channel"),
    ],
)
def test_local_methods_hit_the_exact_amount_on_every_layer(method: str, unit: str, steps: int) -> None:
    model = make()
    prune_model(
        model,
        PruneParams(
            method=method,
            amount=0.55,
            targets=["all"],
            steps=steps,
            schedule="iterative" if steps > 1 else "oneshot",
        ),
    )
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            w = module.weight
            if unit == "weight":
                assert zeros(model, f"{name}.weight") == round(0.55 * w.numel()), name
            else:
                assert zero_filters(model, f"{name}.weight") == round(0.55 * w.shape[0]), name


@pytest.mark.parametrize("criterion", ["l1", "random"])
@pytest.mark.parametrize("steps", [1, 4])
def test_global_unstructured_hits_the_exact_total(criterion: str, steps: int) -> None:
    model = make()
    result = prune_model(
        model,
        PruneParams(
            method="global_unstructured",
            criterion=criterion,
            amount=0.8,
            targets=["Conv2d"],
            steps=steps,
            schedule="iterative" if steps > 1 else "oneshot",
        ),
    )
    total = sum(m.numel() for m in result.masks.values())
    assert sum(zeros(model, name) for name in result.masks) == round(0.8 * total)
    assert all(name.startswith("conv") for name in result.masks)


def test_steps_do_not_compound() -> None:
    """Three steps of a PruningContainer at 0.5 each would prune 87.5 %; we must land on 50 %."""
    model = make()
    prune_model(
        model,
        PruneParams(method="l1_unstructured", amount=0.5, targets=["conv2"], steps=3, schedule="iterative"),
    )
    assert zeros(model, "conv2.weight") == model.conv2.weight.numel() // 2


def test_integer_amount_is_a_count_and_per_layer_overrides() -> None:
    model = make()
    prune_model(
        model,
        PruneParams(method="ln_structured", amount=2, targets=["conv1", "conv2"], per_layer={"conv2": 0.5}),
    )
    assert zero_filters(model, "conv1.weight") == 2
    assert zero_filters(model, "conv2.weight") == 4


def test_identity_prunes_nothing() -> None:
    model = make()
    prune_model(model, PruneParams(method="identity", targets=["all"]))
    assert all(zeros(model, f"{n}.weight") == 0 for n in ("conv1", "conv2", "fc"))


def test_bias_can_be_pruned() -> None:
    model = make()
    result = prune_model(
        model,
        PruneParams(method="l1_unstructured", amount=0.5, targets=["fc"], parameters=["weight", "bias"]),
    )
    assert set(result.masks) == {"fc.weight", "fc.bias"}
    assert zeros(model, "fc.bias") == 5


def test_targets_by_type_exclude_and_all() -> None:
    model = make()
    assert list(select_targets(model, PruneParams(targets=["Linear"]))) == ["fc"]
    convs = select_targets(model, PruneParams(targets=["all"], exclude=["conv1", "fc"]))
    assert "conv1" not in convs and "fc" not in convs and "conv2" in convs


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (PruneParams(targets=["conv9"]), r"prune.targets: unknown layer 'conv9'; did you mean"),
        (PruneParams(targets=["conv1"], exclude=["conv1"]), r"nothing left to prune"),
        (PruneParams(targets=["conv1"], per_layer={"conv2": 0.1}), r"prune.per_layer: 'conv2' is not among"),
        (PruneParams(amount=100, targets=["conv1"]), r"prune.amount = 100: more than the 8 units"),
        (PruneParams(dim=7), r"prune.dim = 7: out of range"),
        (
            PruneParams(method="global_unstructured", per_layer={"conv1": 0.1}),
            r"not applicable to the global method",
        ),
    ],
)
def test_bad_targets_and_amounts_name_the_param(cfg: PruneParams, message: str) -> None:
    with pytest.raises(UserError, match=message):
        prune_model(make(), cfg)


def test_model_without_prunable_layers() -> None:
    with pytest.raises(UserError, match="no Conv2d or Linear layer"):
        prune_model(nn.Sequential(nn.ReLU()), PruneParams())


def test_registry_lists_every_torch_method() -> None:
    assert set(METHODS) >= {
        "identity",
        "random_unstructured",
        "l1_unstructured",
        "random_structured",
        "ln_structured",
        "global_unstructured",
    }


class EveryOtherFilter(tprune.BasePruningMethod):
    """Test plugin: prunes filters by index parity, ignoring the amount's selection logic."""

    PRUNING_TYPE = "structured"

    def __init__(self, amount: int, dim: int = 0) -> None:
        self.amount, self.dim = amount, dim

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        mask = default_mask.clone()
        mask[: 2 * self.amount : 2] = 0
        return mask


def halve_function(module: nn.Module, name: str, amount: int) -> nn.Module:
    return tprune.l1_unstructured(module, name, amount)


def test_plugins_by_import_path_run_like_builtins() -> None:
    model = make()
    prune_model(model, PruneParams(method="tests.test_prune:EveryOtherFilter", amount=0.5, targets=["conv2"]))
    assert zero_filters(model, "conv2.weight") == model.conv2.weight.shape[0] // 2
    model = make()
    prune_model(model, PruneParams(method="tests.test_prune:halve_function", amount=0.25, targets=["fc"]))
    assert zeros(model, "fc.weight") == round(0.25 * model.fc.weight.numel())


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.test_prune:nothing_here", r"has no attribute 'nothing_here'"),
        (
            "tests.test_prune:TINY_CNN",
            r"is neither a torch.nn.utils.prune.BasePruningMethod subclass nor a function",
        ),
        ("tests.test_prune:", r"not an import path"),
    ],
)
def test_bad_plugins_name_the_path(path: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        prune_model(make(), PruneParams.model_construct(**{**PruneParams().model_dump(), "method": path}))


def test_shipped_fpgm_plugin_prunes_the_most_replaceable_filters() -> None:
    from prunelab.examples.fpgm import geometric_median_saliency

    model = make()
    w = model.conv2.weight.detach().clone()
    w[0] = w[1:].median(0).values  # a filter sitting at the centre of the others
    with torch.no_grad():
        model.conv2.weight.copy_(w)
    expected = set(geometric_median_saliency(w).argsort()[:3].tolist())
    assert 0 in expected
    result = prune_model(
        model,
        PruneParams(method="prunelab.examples.fpgm:GeometricMedianStructured", amount=3, targets=["conv2"]),
    )
    pruned = set((model.conv2.weight.flatten(1) == 0).all(1).nonzero().flatten().tolist())
    assert pruned == expected and result.masks["conv2.weight"].shape == w.shape


def test_fpgm_plugin_steps_and_sweep_amounts_are_exact() -> None:
    model = make()
    prune_model(
        model,
        PruneParams(
            method="prunelab.examples.fpgm:GeometricMedianStructured",
            amount=0.5,
            targets=["Conv2d"],
            steps=2,
            schedule="agp",
        ),
    )
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            assert zero_filters(model, f"{name}.weight") == round(0.5 * module.out_channels), name


def test_agp_follows_the_cubic_schedule_and_ends_exact() -> None:
    from prunelab.amounts import step_fractions

    fractions = step_fractions(4, "agp")
    assert fractions == pytest.approx([1 - (1 - k / 4) ** 3 for k in range(1, 5)]) and fractions[-1] == 1
    seen: list[int] = []
    model = make()

    def record(step: int) -> None:  # runs with masks active, as fine-tuning would
        seen.append(int((model.conv2.weight == 0).sum()))

    prune_model(
        model,
        PruneParams(method="l1_unstructured", amount=0.8, targets=["conv2"], schedule="agp", steps=4),
        between_steps=record,
    )
    total = model.conv2.weight.numel()
    assert seen == [round(f * round(0.8 * total)) for f in fractions[:-1]]
    assert zeros(model, "conv2.weight") == round(0.8 * total)


def test_oneshot_with_several_steps_is_refused() -> None:
    from prunelab.params import ParamsError, parse_params

    with pytest.raises(ParamsError, match=r"prune\.steps = 3 needs prune\.schedule iterative or agp"):
        parse_params({"prune": {"steps": 3}})


@pytest.mark.parametrize("method", ["random_unstructured", "random_structured"])
def test_random_masks_follow_prune_seed_and_leave_the_global_generator_alone(method: str) -> None:
    def masks(seed: int) -> torch.Tensor:
        return prune_model(make(), PruneParams(method=method, amount=0.5, seed=seed)).masks["conv1.weight"]

    first, again, other = masks(0), masks(0), masks(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    model = make()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    prune_model(model, PruneParams(method=method, amount=0.5, seed=7))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_stochastic_flag_marks_the_seed_dependent_methods() -> None:
    assert METHODS["random_unstructured"].stochastic(PruneParams())
    assert not METHODS["ln_structured"].stochastic(PruneParams())
    assert METHODS["global_unstructured"].stochastic(PruneParams(criterion="random"))
    assert not METHODS["global_unstructured"].stochastic(PruneParams(criterion="l1"))


def test_round_to_keeps_multiples_of_channels() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", {"widths": [64, 128], "stem": 32})
    cfg = PruneParams(amount=0.3, targets=["Conv2d"], round_to=16)
    result = prune_model(model, cfg)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        kept = int(result.masks[f"{name}.weight"].flatten(1).any(1).sum())
        total = getattr(model, name).out_channels
        assert kept % 16 == 0 and abs(kept - 0.7 * total) <= 8, (name, kept)
    with pytest.raises(UserError, match=r"prune\.round_to = 8 applies to structured"):
        check_prune_params(PruneParams(method="l1_unstructured", round_to=8))


def test_macs_reduction_finds_the_smallest_amount_that_reaches_it() -> None:
    from prunelab.compact import remove_zero_channels
    from prunelab.cost_search import amount_for_macs_reduction
    from prunelab.measure import count_macs

    torch.manual_seed(0)
    model = build_model("cnn", {"widths": [32, 64], "stem": 16})
    dense = count_macs(model)
    cfg = PruneParams(targets=["Conv2d"], macs_reduction=0.5)
    amount = amount_for_macs_reduction(model, cfg)

    def macs_at(value: float) -> int:
        trial = build_model("cnn", {"widths": [32, 64], "stem": 16})
        trial.load_state_dict(model.state_dict())
        prune_model(trial, cfg.one_shot(cfg.method, value, cfg.targets))
        remove_zero_channels(trial)
        return count_macs(trial)

    assert macs_at(amount) <= 0.5 * dense < macs_at(amount - 1 / 1024)
    assert count_macs(model) == dense  # the search pruned copies only


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"method": "l1_unstructured", "macs_reduction": 0.5}, "structured method along dim 0"),
        ({"dim": 1, "macs_reduction": 0.5}, "structured method along dim 0"),
        ({"macs_reduction": 0.5, "per_layer": {"conv1": 0.2}}, "remove prune.per_layer"),
        ({"macs_reduction": 1.0}, "macs_reduction"),
        (
            {"method": "l1_unstruct"},
            r"prune.method = 'l1_unstruct': unknown method; did you mean 'l1_unstructured'",
        ),
        ({"method": "no_such_pkg.x:Y"}, r"prune.method: cannot import module 'no_such_pkg.x'"),
    ],
)
def test_bad_prune_params_name_the_param(cfg: dict, message: str) -> None:
    """Schema errors at parsing, registry cross-checks right after: both name the key."""
    with pytest.raises((ParamsError, UserError), match=message):
        check_prune_params(parse_params({"prune": cfg}).prune)


def test_per_layer_analysis_refuses_global_methods() -> None:
    check_method_names(["ln_structured", "l1_unstructured"], "sensitivity.methods", per_layer=True)
    with pytest.raises(
        UserError, match=r"sensitivity.methods: 'global_unstructured' prunes all layers jointly"
    ):
        check_method_names(["global_unstructured"], "sensitivity.methods", per_layer=True)


def test_unreachable_macs_reduction_says_what_is_reachable() -> None:
    from prunelab.cost_search import amount_for_macs_reduction

    cfg = PruneParams(targets=["conv1"], macs_reduction=0.9)  # conv1's filters alone cannot
    with pytest.raises(UserError, match=r"prune\.macs_reduction = 0\.9: even amount 0\.9"):
        amount_for_macs_reduction(make(), cfg)
