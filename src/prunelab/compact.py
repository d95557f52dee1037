"""Physically smaller models: remove whole pruned channels with Torch-Pruning's DepGraph.

A conv filter is not removed alone: its BatchNorm channel and the next layer's input channels go
with it, and coupled layers (residual additions) must all agree. `coupled_channel_masks` extends
a structured pruning's masks to those coupled parameters, so that the *masked* model already
computes what the compact model will. Otherwise the removed channel's BN bias would still feed
the next layer, and compaction would change the outputs (the classic bug). `compact` then
removes the channels, and `max_output_difference` checks the two agree. A compacted checkpoint
records what was removed; `load_model` replays that on a freshly built model.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

from prunelab.checkpoints import Checkpoint, load_state_into
from prunelab.data import normalize
from prunelab.device import CPU
from prunelab.errors import UserError
from prunelab.measure import count_macs
from prunelab.models import build_model, prunable_layers


def dependency_graph(model: nn.Module) -> tp.DependencyGraph:
    """Torch-Pruning's DepGraph of `model` (in eval mode), traced on one CIFAR-sized image."""
    model.eval()
    example = torch.zeros(1, 3, 32, 32)
    try:
        with torch.enable_grad():  # DepGraph traces through autograd, even for callers under no_grad
            return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    except Exception as exc:  # a user model Torch-Pruning cannot trace
        raise UserError(
            f"compact: cannot trace the model's channel dependencies ({type(exc).__name__}: {exc})"
        ) from None


def _zero_out_channels(weight: torch.Tensor) -> list[int]:
    return (weight.detach().flatten(1) == 0).all(1).nonzero().flatten().tolist()


def _removable(
    model: nn.Module, graph: tp.DependencyGraph
) -> Iterator[tuple[str, nn.Module, list[int], tp.Group]]:
    """Convs with whole zero output channels, restricted to channels zero in every coupled conv.

    Lazy: the caller may prune each group before the next is looked for. The classifier's
    outputs are classes and are never removed."""
    layers = prunable_layers(model)
    # Zero filters as pruned, read before anything is removed: removing a layer's inputs can
    # leave a later filter all-zero (one that only read those inputs, as identity-initialised
    # filters do) whose BatchNorm bias still feeds the next layer; it is not pruned.
    zero = {m: _zero_out_channels(m.weight) for m in layers.values() if isinstance(m, nn.Conv2d)}
    handled: set[nn.Module] = set()  # convs already pruned as part of an earlier coupled group
    for name, module in layers.items():
        if not isinstance(module, nn.Conv2d) or module in handled:
            continue
        idxs = zero[module]
        if not idxs:
            continue
        group = graph.get_pruning_group(module, tp.prune_conv_out_channels, idxs)
        # A channel is removable only if every coupled conv (e.g. both sides of a residual
        # addition) has it zero; coupled indices are listed position by position.
        keep = [True] * len(idxs)
        for dep, dep_idxs in group:
            target = dep.target.module
            if dep.handler == tp.prune_conv_out_channels and target is not module:
                coupled_zero = set(zero[target])
                keep = [k and int(j) in coupled_zero for k, j in zip(keep, dep_idxs, strict=True)]
        kept = [i for i, k in zip(idxs, keep, strict=True) if k]
        if kept:
            group = graph.get_pruning_group(module, tp.prune_conv_out_channels, kept)
            handled |= {dep.target.module for dep, _ in group if dep.handler == tp.prune_conv_out_channels}
            yield name, module, kept, group


def coupled_channel_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks for the BatchNorm (and conv bias) channels coupled to pruned output filters."""
    params = {p: n for n, p in model.named_parameters()}
    extra: dict[str, torch.Tensor] = {}
    graph = dependency_graph(model)
    for _, _, _, group in _removable(model, graph):
        for dep, dep_idxs in group:
            target = dep.target.module
            if dep.handler == tp.prune_batchnorm_out_channels and target.affine:
                for param in (target.weight, target.bias):
                    name = params[param]
                    mask = extra.get(name, torch.ones_like(param, dtype=torch.bool))
                    mask[list(dep_idxs)] = False
                    extra[name] = mask
            elif dep.handler == tp.prune_conv_out_channels and target.bias is not None:
                name = params[target.bias]
                mask = extra.get(name, torch.ones_like(target.bias, dtype=torch.bool))
                mask[list(dep_idxs)] = False
                extra[name] = mask
    return {**extra, **masks}


def fold_pruned_biases(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked biases of filters whose weights are zero, first moving what they sent
    downstream into the biases of the layers that read them.

    Such a filter still outputs its bias, through ReLU and pooling a constant; torch's pruning
    keeps it, and zeroing the bias, which removing the channel does, loses it. Folded into the
    next conv's (or linear's) bias, its effect is kept exactly away from zero-padded borders,
    and the model still equals its compacted form. A reader without a bias loses it as before.
    """
    params = dict(model.named_parameters())
    pruned: dict[nn.Module, list[int]] = {}
    for name, module in model.named_modules():
        mask = masks.get(f"{name}.bias")
        if isinstance(module, nn.Conv2d) and module.bias is not None and mask is not None:
            idxs = [j for j in _zero_out_channels(module.weight) if not mask[j] and module.bias[j] != 0]
            if idxs:
                pruned[module] = idxs
    if not pruned:
        return
    graph = dependency_graph(model)
    readers = {
        dep.target.module
        for module, idxs in pruned.items()
        for dep, _ in graph.get_pruning_group(module, tp.prune_conv_out_channels, idxs)
        if dep.handler in (tp.prune_conv_in_channels, tp.prune_linear_in_channels)
        and dep.target.module.bias is not None
    }
    names = {module: name for name, module in model.named_modules()}
    reference = copy.deepcopy(model)  # the biases kept, as torch's pruning leaves them
    with torch.no_grad():
        for module, idxs in pruned.items():
            module.bias[idxs] = 0
        for reader in sorted(readers, key=lambda m: list(names).index(m)):  # in forward order
            # what the pruned filters' constants add to the reader's input, and so to its output
            extra = _input_of(reference, names[reader]) - _input_of(model, names[reader])
            if isinstance(reader, nn.Conv2d):
                out = nn.functional.conv2d(
                    extra, reader.weight, None, reader.stride, reader.padding, reader.dilation, reader.groups
                )
                delta = out[0, :, out.shape[2] // 2, out.shape[3] // 2]  # away from the borders
            else:
                delta = nn.functional.linear(extra, reader.weight)[0]
            params[f"{names[reader]}.bias"].add_(delta)


def _input_of(model: nn.Module, name: str) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    handle = dict(model.named_modules())[name].register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach().clone())
    )
    try:
        model.eval()(torch.zeros(1, 3, 32, 32))
    finally:
        handle.remove()
    return captured[0]


def compact(model: nn.Module) -> dict[str, list[int]]:
    """Remove every removable zero channel in place; returns {layer: removed output channels},
    which `rebuild_compact` replays on a fresh model."""
    graph = dependency_graph(model)
    removed: dict[str, list[int]] = {}
    for name, _, idxs, group in _removable(model, graph):
        if graph.check_pruning_group(group):
            group.prune()
            removed[name] = idxs
    return removed


def compacted_macs(model: nn.Module) -> int:
    """MACs of `model` once its zero channels are removed (on a copy; `model` is untouched)."""
    trial = copy.deepcopy(model)
    compact(trial)
    return count_macs(trial)


def rebuild_compact(model: nn.Module, removed: dict[str, list[int]]) -> nn.Module:
    """Give a freshly built dense model the compact shapes recorded by `compact`."""
    graph = dependency_graph(model)
    layers = prunable_layers(model)
    for name, idxs in removed.items():
        graph.get_pruning_group(layers[name], tp.prune_conv_out_channels, idxs).prune()
    return model


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


def load_model(ckpt: Checkpoint, source: str) -> nn.Module:
    """Rebuild the model a checkpoint describes, compacted shapes included, with its weights."""
    model = build_model(ckpt.arch, ckpt.model_kwargs)
    removed = ckpt.meta.get("removed_channels")
    if removed:
        rebuild_compact(model, removed)
    load_state_into(model, ckpt.state_dict, source)
    return model


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
    model: nn.Module, images: torch.Tensor, tolerance: float, device: torch.device = CPU
) -> tuple[nn.Module, dict[str, list[int]]] | None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not any(_zero_out_channels(conv.weight) for conv in convs):
        return None  # cheap: no whole filter is zero, so nothing to remove
    small = copy.deepcopy(model)
    removed = compact(small)
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
    model: nn.Module, masks: dict[str, torch.Tensor], images: torch.Tensor, tolerance: float
) -> CompactForm | None:
    """The compacted twin of a masked `model` (as `compacted_copy`), with the masks and positions
    that `expand_into` needs; None where no channel can be removed or the twin differs.

    Training the twin equals training the masked model up to rounding: a removed channel outputs
    exactly zero (its BatchNorm masked with it), so the weights that read it get no gradient."""
    compacted = _compacted(model, images, tolerance)
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


def coupled_conv_groups(model: nn.Module) -> list[list[str]]:
    """Conv layers whose output channels are tied together (by residual additions), as groups
    of layer names; an uncoupled conv is a group of one."""
    graph = dependency_graph(model)
    layers = {name: m for name, m in prunable_layers(model).items() if isinstance(m, nn.Conv2d)}
    names = {m: name for name, m in layers.items()}
    group_of: dict[str, set[str]] = {}
    for name, module in layers.items():
        members = {name} | {
            names[dep.target.module]
            for dep, _ in graph.get_pruning_group(module, tp.prune_conv_out_channels, [0])
            if dep.handler == tp.prune_conv_out_channels and dep.target.module in names
        }
        merged = set().union(members, *(group_of.get(n, set()) for n in members))
        for n in merged:
            group_of[n] = merged
    seen, groups = set(), []
    for name in layers:
        if name not in seen:
            group = [n for n in layers if n in group_of[name]]
            seen |= set(group)
            groups.append(group)
    return groups


def export_onnx(model: nn.Module, path: Path) -> None:
    """ONNX with a dynamic batch axis, loadable by onnxruntime without torch or prunelab.
    Writes `path` directly: stage it (io.staged_outputs) when it replaces an output."""
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but needs no onnxscript and handles
        # these plain conv nets exactly (outputs checked against torch in the tests).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 3, 32, 32),),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}},
        )
