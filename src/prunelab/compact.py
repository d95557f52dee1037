"""Physically smaller models: remove whole pruned channels.

`remove_zero_channels` removes every output channel that pruning zeroed, with the channels
coupled to it (coupling.py), and `max_output_difference` checks the masked and the compact
model agree. A compacted checkpoint records what was removed; checkpoints.loading replays that on
a freshly built model. `compact_form` gives a masked model's compacted twin to train at the
small model's cost.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from prunelab.checkpoints import Checkpoint
from prunelab.coupling import dependency_graph, rebuild_compact, removable_groups, zero_out_channels
from prunelab.data import normalize
from prunelab.device import CPU
from prunelab.errors import UserError
from prunelab.measure import count_macs
from prunelab.models import build_model, prunable_layers

TRAINING_WIDTH_MULTIPLE = 16
"""The compacted twin that trains in a masked model's place keeps every layer's width a multiple
of this; the zero channels it keeps stay masked. PyTorch's CPU BatchNorm backward in channels_last
runs 10 to 20 times slower per element at other widths (torch 2.15; a resnet20 pruned with
ln_structured to 2x fewer MACs has widths 8, 15, 17, 29, 34 and 61), which made its compacted
fine-tuning slower than the masked dense-shaped model's (benchmarks/finetune_speed.py)."""


def remove_zero_channels(model: nn.Module, multiple_of: int = 1) -> dict[str, list[int]]:
    """Remove every removable zero channel in place, or, with `multiple_of` > 1, the fewest that
    leave each layer's width a multiple of it; returns {layer: removed output channels}, which
    `rebuild_compact` replays on a fresh model."""
    graph = dependency_graph(model)
    removed: dict[str, list[int]] = {}
    for name, _, idxs, group in removable_groups(model, graph, multiple_of):
        if graph.check_pruning_group(group):
            group.prune()
            removed[name] = idxs
    return removed


def compacted_macs(model: nn.Module) -> int:
    """MACs of `model` once its zero channels are removed (on a copy; `model` is untouched)."""
    trial = copy.deepcopy(model)
    remove_zero_channels(trial)
    return count_macs(trial)


def all_removals(ckpt: Checkpoint, removed: dict[str, list[int]]) -> dict[str, list[int]]:
    """This compaction's `removed` merged with the checkpoint's earlier ones, in the dense model's
    channel numbers, which `load_model` replays at once: a compact checkpoint pruned and
    compacted again keeps its first removals (`removed` counts only the channels they left)."""
    earlier: dict[str, list[int]] = ckpt.meta.get("removed_channels") or {}
    if not earlier:
        return removed
    dense = prunable_layers(build_model(ckpt.arch, ckpt.model_kwargs))
    merged = dict(earlier)
    for name, idxs in removed.items():
        gone = set(earlier.get(name, []))
        left = [c for c in range(dense[name].weight.shape[0]) if c not in gone]
        merged[name] = sorted(gone | {left[i] for i in idxs})
    return merged


@torch.no_grad()
def max_output_difference(
    a: nn.Module, b: nn.Module, images: torch.Tensor, device: torch.device = CPU
) -> float:
    """Largest difference of two models' fp32 logits on `images`, computed on `device` (TF32
    off: its 10-bit mantissa alone would exceed compact.tolerance)."""
    x = normalize(images.to(device)).contiguous()
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            return (a.eval().to(device)(x) - b.eval().to(device)(x)).abs().max().item()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        a.to("cpu")
        b.to("cpu")


def compacted_copy(
    model: nn.Module, images: torch.Tensor, tolerance: float, device: torch.device = CPU
) -> nn.Module | None:
    """A compacted copy of `model` to score in its place: fewer MACs, the same function. None
    where no channel can be removed, or where the copy's logits on `images` differ from the
    model's by more than `tolerance` (then score the model itself)."""
    compacted = _compacted(model, images, tolerance, device)
    return compacted[0] if compacted else None


def _compacted(
    model: nn.Module,
    images: torch.Tensor,
    tolerance: float,
    device: torch.device = CPU,
    multiple_of: int = 1,
) -> tuple[nn.Module, dict[str, list[int]]] | None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not any(zero_out_channels(conv.weight) for conv in convs):
        return None  # cheap: no whole filter is zero, so nothing to remove
    small = copy.deepcopy(model)
    removed = remove_zero_channels(small, multiple_of)
    if not removed or max_output_difference(model, small, images, device) > tolerance:
        return None
    return small, removed


@dataclass
class CompactForm:
    """A masked model's compacted twin, to train at the small model's cost, and the way back:
    `masks` are the zeros compaction could not remove (in the twin's shapes), `origin` the flat
    position in the masked model of every entry the twin kept, per parameter and buffer."""

    model: nn.Module
    masks: dict[str, torch.Tensor]
    origin: dict[str, torch.Tensor]


def compact_form(
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    images: torch.Tensor,
    tolerance: float,
    multiple_of: int = TRAINING_WIDTH_MULTIPLE,
) -> CompactForm | None:
    """The compacted twin of a masked `model` (as `compacted_copy`, its widths multiples of
    `multiple_of`), with the masks and positions that `expand_into` needs; None where no channel
    can be removed or the twin differs.

    Training the twin equals training the masked model up to rounding: a removed channel outputs
    exactly zero (its BatchNorm masked with it), so the weights that read it get no gradient."""
    compacted = _compacted(model, images, tolerance, multiple_of=multiple_of)
    if compacted is None:
        return None
    small, removed = compacted
    # Replay the same removals on copies holding each entry's position (exact in fp32 below
    # 2**24 entries a tensor), and each mask.
    positions, held = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        for name, tensor in _floating_state(positions).items():
            if tensor.numel() >= 2**24:
                raise UserError(f"compact: {name} has too many entries to train in compacted form")
            tensor.copy_(torch.arange(tensor.numel(), dtype=tensor.dtype).view_as(tensor))
        for name, tensor in _floating_state(held).items():
            tensor.copy_(masks[name].to(tensor.dtype)) if name in masks else tensor.fill_(1)
    rebuild_compact(positions, removed)
    rebuild_compact(held, removed)
    origin = {name: t.detach().flatten().long() for name, t in _floating_state(positions).items()}
    left = {name: t.detach() != 0 for name, t in _floating_state(held).items() if name in masks}
    return CompactForm(small, {name: m for name, m in left.items() if not m.all()}, origin)


@torch.no_grad()
def expand_into(form: CompactForm, model: nn.Module) -> None:
    """Write the (trained) twin's entries back to their places in the masked `model`; what
    compaction removed keeps its value (zeros, or weights that only ever read zeros)."""
    trained = _floating_state(form.model)
    for name, tensor in _floating_state(model).items():
        tensor.view(-1)[form.origin[name].to(tensor.device)] = trained[name].flatten().to(tensor)


def _floating_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t for name, t in model.state_dict(keep_vars=True).items() if t.is_floating_point()}
