"""Model registry: built-in CIFAR CNNs beside user models named by import path.

A model is rebuilt from (arch, kwargs), which every checkpoint records, so a checkpoint plus
prunelab (or the user's own factory) is all anyone needs to load it.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

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
) -> nn.Sequential:
    """VGG-style net in the spirit of airbench: a stem conv, then per width a block of
    conv → max-pool → BN → GELU followed by (convs_per_block − 1) × conv → BN → GELU;
    global average pool and a linear classifier. Layers are named conv1…convN, fc, so targets read
    like the seed notebook ("conv1")."""
    if not widths or any(w <= 0 for w in widths) or stem <= 0 or convs_per_block < 1:
        raise UserError(
            f"model.kwargs: widths {list(widths)}, stem {stem} and convs_per_block "
            f"{convs_per_block} must be positive"
        )
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    index = 0

    def conv_bn(c_in: int, c_out: int, pool: bool) -> None:
        nonlocal index
        index += 1
        layers[f"conv{index}"] = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        if pool:
            layers[f"pool{index}"] = nn.MaxPool2d(2)
        layers[f"bn{index}"] = nn.BatchNorm2d(c_out)
        layers[f"act{index}"] = nn.GELU()

    conv_bn(3, stem, pool=False)
    channels = stem
    for width in widths:
        conv_bn(channels, width, pool=True)
        for _ in range(convs_per_block - 1):
            conv_bn(width, width, pool=False)
        channels = width
    layers["gpool"] = nn.AdaptiveAvgPool2d(1)  # an unscaled global max-pool diverges at high LR
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(channels, num_classes)
    return nn.Sequential(layers)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv and linear layers by qualified name: what pruning targets can name."""
    return {
        name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d | nn.Linear)
    }
