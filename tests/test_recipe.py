"""The training recipe's pieces: whitening and identity init, test-time augmentation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunelab.data import normalize
from prunelab.errors import UserError
from prunelab.models import build_model, whiten_first_conv
from prunelab.params import EvaluateParams
from prunelab.predict import predict, translate
from tests.conftest import ROOT, write_params


def _images(n: int = 300) -> torch.Tensor:
    # Smooth random images: neighbouring pixels correlate, as in real photos.
    g = torch.Generator().manual_seed(0)
    small = torch.rand(n, 3, 8, 8, generator=g)
    return (nn.functional.interpolate(small, size=32, mode="bilinear") * 255).to(torch.uint8)


def test_whitening_init_decorrelates_patches() -> None:
    model = build_model("cnn", {"widths": [8, 16], "stem": 16})
    images = _images()
    whiten_first_conv(model, images)
    w = model.conv1.weight.detach()
    assert torch.allclose(w[:8], -w[8:])  # each filter with its negation
    norms = w.flatten(1).norm(dim=1)
    assert torch.allclose(norms, norms[0].expand_as(norms))  # equal: no ranking by variance
    with torch.no_grad():
        out = nn.functional.conv2d(normalize(images).float(), w[:8])  # valid patches only
    channels = out.permute(1, 0, 2, 3).flatten(1)
    cov = channels @ channels.T / channels.shape[1]
    variances = cov.diagonal()
    assert torch.all(variances[:-1] >= variances[1:])  # principal directions, largest first
    correlation = cov / (variances[:, None] * variances[None, :]).sqrt()
    assert torch.allclose(correlation, torch.eye(8), atol=0.02)  # decorrelated outputs


def test_a_frozen_airbench_stem_whitens_to_unit_variance_and_its_head_max_pools_scaled_logits() -> None:
    model = build_model("airbench", {"widths": [8, 16], "stem": 12})
    spelled_out = {"stem_kernel": 2, "stem_norm": False, "head": "max", "logit_scale": 1 / 9}
    assert str(model) == str(build_model("cnn", {"widths": [8, 16], "stem": 12, **spelled_out}))
    names = list(dict(model.named_children()))
    assert names[:3] == ["conv1", "act1", "conv2"]  # no BatchNorm after the stem
    assert model.conv1.kernel_size == (2, 2) and model.conv1.bias is not None
    assert isinstance(model.gpool, nn.AdaptiveMaxPool2d) and names[-1] == "scale"
    images = _images()
    whiten_first_conv(model, images, frozen=True)
    w, b = model.conv1.weight.detach(), model.conv1.bias.detach()
    assert torch.allclose(w[:6], -w[6:]) and not b.any()
    with torch.no_grad():
        out = nn.functional.conv2d(normalize(images).float(), w[:6])
        features = model[:-1](normalize(images[:4]).float())
    assert out.shape[-1] == 31  # 2×2 without padding
    channels = out.permute(1, 0, 2, 3).flatten(1)
    cov = channels @ channels.T / channels.shape[1]
    # 1/√(eigenvalue + 5e-4): unit variance along each strong direction, decorrelated
    assert torch.allclose(cov, torch.eye(6), atol=0.05)
    torch.testing.assert_close(model(normalize(images[:4]).float()), features / 9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"head": "mean"}, r"model\.kwargs\.head"), ({"logit_scale": 0}, r"model\.kwargs\.logit_scale")],
)
def test_cnn_refuses_an_unknown_head_or_a_scale_that_is_not_positive(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_model("cnn", {"widths": [8], **kwargs})


def test_whitening_refuses_a_stem_it_cannot_fill() -> None:
    model = build_model("cnn", {"widths": [8], "stem": 7})  # odd: no ± pairs
    with pytest.raises(UserError, match=r"train\.whiten"):
        whiten_first_conv(model, _images(10))
    with pytest.raises(UserError, match=r"train\.whiten"):
        whiten_first_conv(build_model("cnn", {"widths": [8], "stem": 64}), _images(10))  # > 2·27


def test_identity_init_starts_each_conv_as_a_pass_through() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", {"widths": [8, 16], "stem": 8})
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(model.conv3(x), x, atol=1e-6)  # 8 → 8: the identity
    assert torch.allclose(model.conv4(x)[:, :8], x, atol=1e-6)  # 8 → 16: the first 8 filters
    plain = build_model("cnn", {"widths": [8, 16], "stem": 8, "identity_init": False})
    assert not torch.allclose(plain.conv3(x), x, atol=1e-3)


def test_translate_shifts_with_reflected_border() -> None:
    x = torch.arange(25.0).view(1, 1, 5, 5)
    down_right = translate(x, 1, 1)
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(translate(x, -1, -1)[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(translate(x, 0, 0), x)


def test_tta_modes_average_the_views() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", {"widths": [8, 16], "stem": 8}).eval()
    images = _images(4)
    x = normalize(images)
    with torch.no_grad():
        plain, mirror = model(x), model(x.flip(-1))
        shifted = model(translate(x, 1, 1)) + model(translate(x, -1, -1).flip(-1))
    assert torch.allclose(predict(model, images, tta="none"), plain, atol=1e-5)
    assert torch.allclose(predict(model, images, tta="flip"), (plain + mirror) / 2, atol=1e-5)
    expected = (plain + mirror + shifted) / 4
    assert torch.allclose(predict(model, images, tta="flip_translate"), expected, atol=1e-5)


def test_tta_param_keeps_its_old_boolean_values() -> None:
    assert EvaluateParams(tta=True).tta == "flip" and EvaluateParams(tta=False).tta == "none"
    assert EvaluateParams().tta == "flip_translate"
    with pytest.raises(ValueError, match="flip_translate"):
        EvaluateParams(tta="crops")


def test_the_recipe_check_scores_each_recipe_and_names_a_bad_one(data_dir: Path, tmp_path: Path) -> None:
    """experiments/recipe_check.py, on generated data: one line per recipe; a malformed recipe,
    or a value the params schema refuses, exits with one line naming it, no traceback."""
    params = write_params(tmp_path / "params.yaml", {"data": {"val_size": 100}})
    script = [
        sys.executable,
        str(ROOT / "experiments/recipe_check.py"),
        "--data",
        str(data_dir),
        "--params",
        str(params),
    ]
    small = ["--arch", "resnet20", "--kwargs", "{width: 4}", "--images", "64", "--val", "32", "--epochs", "1"]
    done = subprocess.run(
        [*script, *small, "", "lr=0.05,bias_lr_scale=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "1 epoch on 64 training images, scored on 32 validation images" in lines[0]
    scored = [line.split(": validation accuracy ")[0] for line in lines if ": validation accuracy " in line]
    assert scored == ["params.yaml", "lr=0.05,bias_lr_scale=1"]
    for recipe, message in [
        ("lr", "recipe 'lr': give train.* settings as key=value"),
        ("lr=-1", "train.lr"),  # the schema's own message, naming the key
    ]:
        bad = subprocess.run([*script, *small, recipe], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr
