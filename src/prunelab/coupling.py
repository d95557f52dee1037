"""Channel coupling, from Torch-Pruning's DepGraph: which parameters lose a channel together.

A conv filter is not removed alone: its BatchNorm channel and the next layer's input channels go
with it, and coupled layers (residual additions) must all agree. `coupled_channel_masks` extends
a structured pruning's masks to those coupled parameters, so that the *masked* model already
computes what the compact model will. Otherwise the removed channel's BN bias would still feed
the next layer, and compaction would change the outputs (the classic bug).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch_pruning as tp
from torch import nn

from prunelab.errors import UserError
from prunelab.models import prunable_layers


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


def zero_out_channels(weight: torch.Tensor) -> list[int]:
    return (weight.detach().flatten(1) == 0).all(1).nonzero().flatten().tolist()


def removable_groups(
    model: nn.Module, graph: tp.DependencyGraph, multiple_of: int = 1
) -> Iterator[tuple[str, nn.Module, list[int], tp.Group]]:
    """Convs with whole zero output channels, restricted to channels zero in every coupled conv;
    with `multiple_of` > 1, the fewest of them that leave the width a multiple of it.

    Lazy: the caller may prune each group before the next is looked for. The classifier's
    outputs are classes and are never removed."""
    layers = prunable_layers(model)
    # Zero filters as pruned, read before anything is removed: removing a layer's inputs can
    # leave a later filter all-zero (one that only read those inputs, as identity-initialised
    # filters do) whose BatchNorm bias still feeds the next layer; it is not pruned.
    zero = {m: zero_out_channels(m.weight) for m in layers.values() if isinstance(m, nn.Conv2d)}
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
        left = -(-(module.out_channels - len(kept)) // multiple_of) * multiple_of  # rounded up
        kept = kept[: max(0, module.out_channels - left)]
        if kept:
            group = graph.get_pruning_group(module, tp.prune_conv_out_channels, kept)
            handled |= {dep.target.module for dep, _ in group if dep.handler == tp.prune_conv_out_channels}
            yield name, module, kept, group


def coupled_channel_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks for the BatchNorm (and conv bias) channels coupled to pruned output filters."""
    params = {p: n for n, p in model.named_parameters()}
    extra: dict[str, torch.Tensor] = {}
    graph = dependency_graph(model)
    for _, _, _, group in removable_groups(model, graph):
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
            idxs = [j for j in zero_out_channels(module.weight) if not mask[j] and module.bias[j] != 0]
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


def rebuild_compact(model: nn.Module, removed: dict[str, list[int]]) -> nn.Module:
    """Give a freshly built dense model the compact shapes recorded by compact.remove_zero_channels."""
    graph = dependency_graph(model)
    layers = prunable_layers(model)
    for name, idxs in removed.items():
        graph.get_pruning_group(layers[name], tp.prune_conv_out_channels, idxs).prune()
    return model


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
