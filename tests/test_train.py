from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.utils import prune as tprune

from prunelab.data import Split, load_split, random_crop_flip
from prunelab.device import CPU, channels_last, onednn_unsafe_convs
from prunelab.models import build_model, whiten_first_conv
from prunelab.params import PruneParams, TrainParams
from prunelab.predict import predict
from prunelab.pruning import prune_model
from prunelab.train import EpochRecord, Lookahead, MaskKeeper, fit, lr_at, planned_epochs

CFG = TrainParams(epochs=2, batch_size=64, lr=0.05, precision="fp32")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", {"widths": [8, 16], "stem": 8, "identity_init": False})  # exact zero counts


def test_augmentation_crops_and_flips_whole_batches() -> None:
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, pad=0, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)
    shifted = random_crop_flip(images, pad=4, generator=torch.Generator().manual_seed(1))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert not torch.equal(shifted, images)


def test_given_flips_replace_the_coin_toss() -> None:
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    flips = torch.tensor([True, False] * 4)
    out = random_crop_flip(images, 0, torch.Generator().manual_seed(0), flips)
    for o, i, f in zip(out, images, flips, strict=True):
        assert torch.equal(o, i.flip(-1) if f else i)


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    values = [lr_at(s, 100, 1.0, 0.2) for s in range(100)]
    assert values[0] == pytest.approx(0.05) and max(values) == pytest.approx(1.0)
    assert values.index(max(values)) == 19 and values[-1] == pytest.approx(0.0125)


def test_training_learns_and_is_deterministic(data_dir: Path) -> None:
    train = load_split(data_dir, train=True)
    test = load_split(data_dir, train=False)
    a, b = _model(), _model()
    fit(a, train, CFG)
    fit(b, train, CFG)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    acc = (predict(a, test.images).argmax(1) == test.labels).float().mean().item()
    assert acc > 0.3  # generated classes are separable; chance is 0.1


def test_lookahead_averages_every_fifth_step_and_ends_on_the_average() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead = Lookahead(model)  # average 1.0
    with torch.no_grad():
        model.weight.fill_(3.0)
    lookahead.step(model, 3, 10)  # not a 5th step: nothing happens
    assert model.weight.item() == 3.0
    lookahead.step(model, 5, 10)
    decay = 0.95**5 * 0.5**3
    assert model.weight.item() == pytest.approx(decay * 1.0 + (1 - decay) * 3.0)
    with torch.no_grad():
        model.weight.fill_(7.0)
    lookahead.step(model, 10, 10)  # the last step: the weights become the average, unmoved
    assert model.weight.item() == pytest.approx(decay * 1.0 + (1 - decay) * 3.0)


def test_lookahead_changes_training(data_dir: Path) -> None:
    train = load_split(data_dir, train=True)
    plain, averaged = _model(), _model()
    fit(plain, train, CFG)
    fit(averaged, train, CFG.model_copy(update={"lookahead": True}))
    assert not torch.equal(plain.state_dict()["fc.weight"], averaged.state_dict()["fc.weight"])


@pytest.mark.parametrize("lookahead", [False, True], ids=["plain", "lookahead"])
def test_resume_after_interruption_gives_identical_weights(
    data_dir: Path, tmp_path: Path, lookahead: bool
) -> None:
    train = load_split(data_dir, train=True)
    cfg = CFG.model_copy(update={"lookahead": lookahead})
    reference = _model()
    fit(reference, train, cfg)

    resume = tmp_path / "resume.pt"

    def crash_after_first_epoch(record: EpochRecord) -> None:
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), train, cfg, resume_file=resume, fingerprint="x", on_epoch=crash_after_first_epoch)
    assert resume.is_file()
    seen: list[int] = []
    resumed = _model()
    history = fit(
        resumed, train, cfg, resume_file=resume, fingerprint="x", on_epoch=lambda r: seen.append(r.epoch)
    )
    assert seen == [1, 2] and len(history) == 2  # epoch 1 replayed from the file, epoch 2 trained
    assert not resume.exists()
    for (name, pa), pb in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_resume_file_of_other_settings_is_ignored(data_dir: Path, tmp_path: Path) -> None:
    train = load_split(data_dir, train=True)
    resume = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(
            _model(),
            train,
            CFG,
            resume_file=resume,
            fingerprint="old",
            on_epoch=lambda r: (_ for _ in ()).throw(KeyboardInterrupt),
        )
    history = fit(_model(), train, CFG, resume_file=resume, fingerprint="new")
    assert [r.epoch for r in history] == [1, 2]


@pytest.mark.parametrize("lookahead", [False, True], ids=["plain", "lookahead"])
@pytest.mark.parametrize(
    "cfg",
    [
        PruneParams(method="l1_unstructured", amount=0.7, targets=["all"]),
        PruneParams(method="ln_structured", amount=0.5, targets=["Conv2d"]),
        PruneParams(method="global_unstructured", amount=0.9, targets=["all"]),
    ],
    ids=["unstructured", "structured", "global"],
)
def test_masks_hold_through_training(data_dir: Path, cfg: PruneParams, lookahead: bool) -> None:
    """Momentum and weight decay must not revive pruned weights: exact zero counts before/after."""
    model = _model()
    result = prune_model(model, cfg)
    params = dict(model.named_parameters())
    before = {name: int((params[name] == 0).sum()) for name in result.targeted}
    fit(
        model,
        load_split(data_dir, train=True),
        CFG.model_copy(update={"weight_decay": 0.05, "lookahead": lookahead}),
        masks=result.masks,
    )
    params = dict(model.named_parameters())
    after = {name: int((params[name] == 0).sum()) for name in result.targeted}
    assert after == before
    assert all(bool((params[n][~m] == 0).all()) for n, m in result.masks.items())


def test_scoring_inside_training_leaves_the_model_where_it_trains() -> None:
    """predict (validation during fit) hands the model back on the device it found it on: on a
    GPU, moving it to the CPU mid-training broke the next step. Shown with the meta device,
    which a CPU-only machine has too."""
    model = build_model("tutorial_cnn", {"widths": [4]}).to("meta")
    with channels_last(model, torch.device("meta")):
        pass
    assert next(model.parameters()).device.type == "meta"


def test_held_masks_follow_the_parameters_device() -> None:
    """Pruning makes masks on the CPU; fine-tuning on a GPU must hold them there (meta stands in
    for the GPU)."""
    model = build_model("tutorial_cnn", {"widths": [4]}).to("meta")
    keeper = MaskKeeper(model, {"conv1.weight": torch.ones(4, 3, 3, 3, dtype=torch.bool)})
    assert [mask.device.type for _, mask in keeper.pairs] == ["meta"]


def _one_plain_step(
    images: torch.Tensor, labels: torch.Tensor, **recipe: float
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model before and after one full-batch SGD step without momentum or decay."""
    before = _model()
    after = _model()
    cfg = TrainParams(
        epochs=1, batch_size=len(images), lr=0.05, momentum=0, weight_decay=0, warmup=0,
        translate=0, alternating_flip=False, precision="fp32", **recipe,
    )  # fmt: skip
    fit(after, Split(images, labels), cfg)
    return before, after


def test_bias_lr_scale_multiplies_the_step_of_batchnorm_biases_only() -> None:
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (32,))
    before, plain = _one_plain_step(images, labels, bias_lr_scale=1.0)
    _, scaled = _one_plain_step(images, labels, bias_lr_scale=64.0)
    start, one, many = before.state_dict(), plain.state_dict(), scaled.state_dict()
    assert not torch.equal(one["bn1.bias"], start["bn1.bias"])
    for name in start:
        if name.startswith("bn") and name.endswith(".bias"):
            torch.testing.assert_close(many[name] - start[name], 64 * (one[name] - start[name]))
        elif start[name].is_floating_point() and "running" not in name:
            torch.testing.assert_close(many[name], one[name], msg=name)  # same first step elsewhere


def test_bn_scale_false_keeps_scales_at_one_while_the_rest_trains(data_dir: Path) -> None:
    model = _model()
    fit(model, load_split(data_dir, train=True), CFG.model_copy(update={"bn_scale": False}))
    scales = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert scales and all(torch.equal(s, torch.ones_like(s)) for s in scales)
    assert any(b.abs().sum() > 0 for b in biases)
    # afterwards they take gradients again: gradient-based pruning criteria read them
    assert all(s.requires_grad for s in scales)


def test_a_frozen_whitening_stem_stays_fixed_while_the_rest_trains(data_dir: Path) -> None:
    torch.manual_seed(0)
    model = build_model("airbench", {"widths": [8, 16], "stem": 12})
    train = load_split(data_dir, train=True)
    whiten_first_conv(model, train.images, frozen=True)
    stem = {k: v.clone() for k, v in model.conv1.state_dict().items()}
    after_stem = model.conv2.weight.clone()
    fit(model, train, CFG.model_copy(update={"whiten": "frozen"}))
    assert all(torch.equal(v, model.conv1.state_dict()[k]) for k, v in stem.items())
    assert not torch.equal(after_stem, model.conv2.weight)
    assert model.conv1.weight.requires_grad  # gradient criteria (group_taylor) read it afterwards
    trained = build_model("airbench", {"widths": [8, 16], "stem": 12})
    whiten_first_conv(trained, train.images, frozen=True)
    fit(trained, train, CFG.model_copy(update={"whiten": True}))
    assert not torch.equal(stem["weight"], trained.conv1.weight)


def test_auto_epochs_follow_the_precision_training_runs_in(data_dir: Path) -> None:
    auto = CFG.model_copy(update={"epochs": "auto"})
    assert auto.epochs_in("bf16") == 10 and auto.epochs_in("fp32") == 6
    assert CFG.epochs_in("bf16") == CFG.epochs_in("fp32") == 2  # a number is a number everywhere
    assert planned_epochs(auto) == 6  # CFG trains in fp32
    history = fit(_model(), load_split(data_dir, train=True), auto.model_copy(update={"batch_size": 300}))
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5, 6]


def test_convs_the_onednn_bug_reaches_are_found_and_run_in_plain_layout_inside_channels_last() -> None:
    """A narrow (or pruned) ResNet's strided 1×1 shortcuts are routed to the plain layout while
    the model borrows channels_last on the CPU, and given back as they came; a weight computed
    by torch's pruning parametrisation (gradual pruning trains with it) too."""
    narrow, wide = build_model("resnet20", {"width": 4}), build_model("resnet20", {"width": 16})
    unsafe = onednn_unsafe_convs(narrow)
    assert [conv.in_channels for conv in unsafe] == [4, 8]  # the two downsampling shortcuts
    assert onednn_unsafe_convs(wide) == [] and onednn_unsafe_convs(build_model("cnn", {})) == []
    tprune.random_unstructured(unsafe[1], "weight", amount=0.5)  # weight = weight_orig * weight_mask
    inputs = []
    for conv in unsafe:
        conv.register_forward_hook(lambda conv, args, out: inputs.append((args[0], conv.weight)))
    with channels_last(narrow, CPU):
        assert narrow.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        assert not narrow.conv1.weight.is_contiguous()
        narrow(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
        # the plain layout: a (O, I, 1, 1) weight's strides are (I, 1, 1, 1), not (I, 1, I, I)
        assert [(x.is_contiguous(), w.stride()[2:]) for x, w in inputs] == [(True, (1, 1))] * 2
    assert not unsafe[0]._forward_pre_hooks and narrow.conv1.weight.is_contiguous()


def test_a_strided_1x1_conv_narrower_than_a_onednn_block_trains_right_in_channels_last() -> None:
    """oneDNN issue #6035: without the routing above, this loop hung every time on an AVX2 CPU
    with 2 threads (and the issue reports crashes with AVX-512, wrong gradients elsewhere). Run
    in a child process so that a hang fails the test instead of stalling the suite."""
    script = """
import torch
from prunelab.device import CPU, channels_last
torch.set_num_threads(2)
torch.manual_seed(0)
conv = torch.nn.Conv2d(4, 8, 1, 2, bias=False)
exact = torch.nn.Conv2d(4, 8, 1, 2, bias=False).double()
exact.weight.data.copy_(conv.weight.data)
worst = 0.0
with channels_last(conv, CPU):
    for _ in range(10):
        x = torch.randn(32, 4, 32, 32).contiguous(memory_format=torch.channels_last)
        conv.weight.grad = exact.weight.grad = None
        conv(x).square().sum().backward()
        exact(x.double().contiguous()).square().sum().backward()
        gap = (conv.weight.grad.double() - exact.weight.grad).abs().max() / exact.weight.grad.abs().max()
        worst = max(worst, gap.item())
print(worst)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1e-5
