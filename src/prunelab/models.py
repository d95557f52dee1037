"""Model registry: built-in CIFAR CNNs beside user models named by import path, the layers
pruning can target, and the whitening init of the first conv.

A model is rebuilt from (arch, kwargs), which every checkpoint records, so a checkpoint plus
prunelab (or the user's own factory) is all anyone needs to load it (`checkpoints.loading.load_model`
also replays compaction).
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prunelab.data import normalize
from prunelab.errors import UserError
from prunelab.plugins import is_import_path, load_object

ModelFactory = Callable[..., nn.Module]
MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def add(factory: ModelFactory) -> ModelFactory:
        MODELS[name] = factory
        return factory

    return add


def build_model(arch: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    if is_import_path(arch):
        factory = load_object(arch, param="model.arch")
        if not callable(factory):
            raise UserError(f"model.arch: '{arch}' is not callable; name a function or class")
    elif arch in MODELS:
        factory = MODELS[arch]
    else:
        close = difflib.get_close_matches(arch, MODELS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(
            f"model.arch = '{arch}': unknown model; {hint}built-in: {', '.join(sorted(MODELS))}, "
            "or an import path 'package.module:factory'"
        )
    try:
        model = factory(**(kwargs or {}))
    except TypeError as exc:
        raise UserError(f"model.kwargs: do not fit model '{arch}' ({exc})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.arch: '{arch}' returned {type(model).__name__}, not a torch nn.Module")
    return model


@register_model("cnn")
def cnn(
    widths: Sequence[int] = (64, 128, 256),
    stem: int = 32,
    convs_per_block: int = 2,
    num_classes: int = 10,
    identity_init: bool = True,
    stem_kernel: int = 3,
    stem_norm: bool = True,
    head: str = "avg",
    logit_scale: float = 1.0,
) -> nn.Sequential:
    """VGG-style net in the spirit of airbench: a stem conv, then per width a block of
    conv → max-pool → BN → GELU followed by (convs_per_block − 1) × conv → BN → GELU;
    global average pool and a linear classifier. Layers are named conv1…convN, fc, so targets read
    like the seed notebook ("conv1"). With `identity_init`, each conv after the stem starts with
    its first c_in filters as the identity (airbench's dirac init): a deep net that begins close
    to a shallow one trains faster in few epochs.

    airbench94's own stem and head (the long setting, docs/recipe.md): `stem_kernel: 2` (no
    padding, so 31×31 maps), `stem_norm: false` (the stem conv has a bias and GELU follows it
    directly; with train.whiten `frozen` it stays the whitening transform), `head: max` (global
    max-pool) and `logit_scale` (airbench: 1/9; without it the max-pool head trained 0.5–0.8
    points worse)."""
    if not widths or any(w <= 0 for w in widths) or stem <= 0 or convs_per_block < 1 or stem_kernel < 1:
        raise UserError(
            f"model.kwargs: widths {list(widths)}, stem {stem}, stem_kernel {stem_kernel} and "
            f"convs_per_block {convs_per_block} must be positive"
        )
    if head not in HEADS:
        raise UserError(f"model.kwargs.head = {head!r}: use one of {', '.join(HEADS)}")
    if not logit_scale > 0:
        raise UserError(
            f"model.kwargs.logit_scale = {logit_scale}: must be > 0 (1 leaves logits as they are)"
        )
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    index = 0

    def conv_bn(c_in: int, c_out: int, pool: bool, kernel: int = 3, norm: bool = True) -> None:
        nonlocal index
        index += 1
        padding = kernel // 2 if kernel % 2 else 0  # an even kernel shrinks the map by kernel − 1
        layers[f"conv{index}"] = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=not norm)
        if pool:
            layers[f"pool{index}"] = nn.MaxPool2d(2)
        if norm:
            layers[f"bn{index}"] = nn.BatchNorm2d(c_out)
        layers[f"act{index}"] = nn.GELU()

    conv_bn(3, stem, pool=False, kernel=stem_kernel, norm=stem_norm)
    channels = stem
    for width in widths:
        conv_bn(channels, width, pool=True)
        for _ in range(convs_per_block - 1):
            conv_bn(width, width, pool=False)
        channels = width
    if identity_init:
        for layer in list(layers.values())[1:]:
            if isinstance(layer, nn.Conv2d) and layer.out_channels >= layer.in_channels:
                nn.init.dirac_(layer.weight.data[: layer.in_channels])
    layers["gpool"] = HEADS[head](1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(channels, num_classes)
    if logit_scale != 1.0:
        layers["scale"] = Scale(logit_scale)
    return nn.Sequential(layers)


HEADS: dict[str, type[nn.Module]] = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}


@register_model("airbench")
def airbench(widths: Sequence[int] = (64, 256, 256), stem: int = 24, **kwargs: Any) -> nn.Sequential:
    """airbench94's net as a `cnn`: a 2×2 stem of 24 filters with a bias and no BatchNorm,
    blocks of [64, 256, 256], a global max-pool head and logits × 1/9. Train it with
    train.whiten `frozen`, as airbench does (the long setting, docs/recipe.md). Other `cnn`
    kwargs (convs_per_block, num_classes, identity_init) pass through."""
    return cnn(widths, stem, stem_kernel=2, stem_norm=False, head="max", logit_scale=1 / 9, **kwargs)


class Scale(nn.Module):
    """Multiplies by a fixed factor (airbench's logit scale)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


@register_model("tutorial_cnn")
def tutorial_cnn(
    widths: Sequence[int] = (32, 64, 128), hidden: int = 256, num_classes: int = 10
) -> nn.Sequential:
    """The scale of the seed notebook's CNN (PyTorch-tutorial style, about 78 % on CIFAR-10):
    per width a 3×3 conv with bias → ReLU → 2×2 max-pool, no BatchNorm, then flatten → linear →
    ReLU → linear. Layers are named conv1…convN, fc1, fc. With no BatchNorm after them, conv1's
    filter norms carry their scale to the next layer, which is what L1 ranking of filters
    assumes (see docs/guide.md, "The seed experiment")."""
    if not widths or any(w <= 0 for w in widths) or hidden <= 0 or len(widths) > 5:
        raise UserError(
            f"model.kwargs: widths {list(widths)} (1 to 5 positive) and hidden {hidden} must be positive"
        )
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = 3
    for index, width in enumerate(widths, start=1):
        layers[f"conv{index}"] = nn.Conv2d(channels, width, 3, padding=1)
        layers[f"act{index}"] = nn.ReLU()
        layers[f"pool{index}"] = nn.MaxPool2d(2)
        channels = width
    side = 32 // 2 ** len(widths)
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(channels * side * side, hidden)
    layers["act_fc1"] = nn.ReLU()
    layers["fc"] = nn.Linear(hidden, num_classes)
    return nn.Sequential(layers)


class BasicBlock(nn.Module):
    """3×3 conv → BN → ReLU → 3×3 conv → BN, plus a shortcut (1×1 conv + BN when the shape
    changes: "option B", which channel pruning can follow through)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet: depth 6n+2, three stages of n blocks at widths w, 2w, 4w."""

    def __init__(self, depth: int = 20, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise UserError(
                f"model.kwargs.depth = {depth}: a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110)"
            )
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, c_in = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, stride=2 if stage and i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.layers(nn.functional.relu(self.bn1(self.conv1(x))))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model("resnet20")
def resnet20(width: int = 16, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(20, width, num_classes)


@register_model("resnet56")
def resnet56(width: int = 16, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(56, width, num_classes)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv and linear layers by qualified name: what pruning targets can name."""
    return {
        name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d | nn.Linear)
    }


# ---------------------------------------------------------------------------------------------
# Initialisation


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, frozen: bool = False) -> None:
    """airbench's whitening init of the first conv, from (up to 5,000) uint8 training images:
    its filters become the top principal directions of the image patches, each with its
    negation, so its outputs start decorrelated.

    Unlike airbench, every filter keeps the norm of the default init instead of 1/√eigenvalue:
    a BatchNorm follows and sets each channel's scale anyway, and with whitening's scales the
    filters' norms would rank them by *inverse* importance, which norm-based pruning of conv1
    (the seed experiment) would then follow. Equal norms also give every filter the same
    effective learning rate.

    `frozen` (train.whiten `frozen`, airbench's stem, which the caller keeps from training): the
    filters are airbench's, scaled by 1/√(eigenvalue + 5·10⁻⁴), so the conv's outputs have unit
    variance along every direction. Fixed filters must carry the whitening's scale themselves:
    airbench's stem has no BatchNorm after it."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise UserError("train.whiten: the model has no Conv2d; set train.whiten: false")
    c, (kh, kw) = conv.in_channels, conv.kernel_size
    dims = c * kh * kw
    if conv.groups != 1 or conv.out_channels % 2 or conv.out_channels > 2 * dims or images.shape[1] != c:
        raise UserError(
            f"train.whiten: the first conv ({c}→{conv.out_channels}, {kh}×{kw}) needs an even "
            f"out_channels ≤ {2 * dims} and {c}-channel input images; set train.whiten: false"
        )
    x = normalize(images[:5000]).float()
    patches = x.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, dims)
    eigenvalues, eigenvectors = torch.linalg.eigh((patches.T @ patches).double() / len(patches))
    keep = conv.out_channels // 2
    top = eigenvectors.T.flip(0)[:keep]  # unit norm, largest eigenvalue first
    if frozen:
        scale = 1 / torch.sqrt(eigenvalues.flip(0)[:keep, None] + 5e-4)
    else:
        scale = conv.weight.detach().flatten(1).norm(dim=1).mean()
    filters = (top * scale).reshape(keep, c, kh, kw).to(conv.weight.dtype)
    conv.weight.data.copy_(torch.cat([filters, -filters]))
    if conv.bias is not None:
        conv.bias.data.zero_()
