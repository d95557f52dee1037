"""The pruning loop: prune the targeted tensors step by step with exact counts, make it permanent,
and mask what is coupled to a removed channel so the model equals its compacted form."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.utils.prune as tprune
from torch import nn

from prunelab.amounts import step_fractions
from prunelab.coupling import coupled_channel_masks, fold_pruned_biases
from prunelab.criteria import Gradients
from prunelab.errors import UserError
from prunelab.methods import PruningMethod, Targets, check_per_layer, resolve_method
from prunelab.models import prunable_layers
from prunelab.params import PruneParams


def select_targets(model: nn.Module, cfg: PruneParams) -> dict[str, nn.Module]:
    """Layers named by prune.targets (names, types Conv2d/Linear, or 'all') minus prune.exclude."""
    layers = prunable_layers(model)
    if not layers:
        raise UserError("prune.targets: the model has no Conv2d or Linear layer to prune")
    type_names = {type(m).__name__ for m in layers.values()} | {"Conv2d", "Linear"}

    def expand(entry: str, key: str) -> list[str]:
        if entry == "all":
            return list(layers)
        if entry in type_names:
            return [name for name, m in layers.items() if type(m).__name__ == entry]
        if entry in layers:
            return [entry]
        close = difflib.get_close_matches(entry, list(layers), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(
            f"{key}: unknown layer '{entry}'; {hint}prunable layers: {', '.join(layers)}; "
            "types: Conv2d, Linear; or 'all'"
        )

    chosen = {name for entry in cfg.targets for name in expand(entry, "prune.targets")}
    chosen -= {name for entry in cfg.exclude for name in expand(entry, "prune.exclude")}
    for name in cfg.per_layer if isinstance(cfg.per_layer, dict) else {}:
        if name not in chosen:
            raise UserError(
                f"prune.per_layer: '{name}' is not among the targeted layers ({', '.join(sorted(chosen)) or 'none'})"
            )
    if not chosen:
        raise UserError("prune.targets: nothing left to prune after prune.exclude")
    return {name: layers[name] for name in layers if name in chosen}


@dataclass
class PruneResult:
    masks: dict[str, torch.Tensor]
    """Boolean keep-masks by parameter name ('conv1.weight'), True where the weight is kept;
    for structured pruning also of the coupled BatchNorm channels."""
    targeted: list[str]
    """The parameters prune.targets named (the rest of `masks` is coupled to them)."""

    @property
    def targeted_sparsity(self) -> float:
        """Fraction of the targeted weights that are pruned."""
        total = sum(self.masks[name].numel() for name in self.targeted)
        pruned = sum(int((~self.masks[name]).sum()) for name in self.targeted)
        return round(pruned / max(1, total), 6)


def prune_model(
    model: nn.Module,
    cfg: PruneParams,
    *,
    between_steps: Callable[[int], None] | None = None,
    gradients: Gradients | None = None,
    method: PruningMethod | None = None,
) -> PruneResult:
    """Prune `model` in place as `cfg` says and make it permanent (prune.remove).

    `between_steps(k)` runs after step k < steps, with the masks still active (for fine-tuning
    between the steps of gradual pruning). `gradients` fills in loss gradients for the methods
    that score with them (`needs_gradients`); the others never call it. `method` is
    prune.method already resolved (resolving a plugin imports it again).
    """
    if isinstance(cfg.per_layer, str):
        raise UserError(
            "prune.per_layer = from_sensitivity must be resolved against metrics/sensitivity.json first"
        )
    method = method or resolve_method(cfg.method)
    layers = select_targets(model, cfg)
    tensors = [
        (lname, m, pname)
        for lname, m in layers.items()
        for pname in cfg.parameters
        if getattr(m, pname, None) is not None
    ]
    if not tensors:
        raise UserError(f"prune.parameters: none of {cfg.parameters} exist on the targeted layers")
    check_per_layer(method, cfg)
    targets = Targets(model, layers, tensors, cfg, gradients)
    fractions = step_fractions(cfg.steps, cfg.schedule)
    # torch's random methods draw from the global generator: seed it from prune.seed (and
    # restore it after), so a random mask depends on the params alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for step, fraction in enumerate(fractions, start=1):
            method.step(targets, fraction)
            if between_steps is not None and step < len(fractions):
                between_steps(step)
    modules = dict(model.named_modules())
    masks: dict[str, torch.Tensor] = {}
    for lname, module in modules.items():  # the targets, and convs coupled to them (group_*)
        for pname in ("weight", "bias"):
            if hasattr(module, f"{pname}_mask"):
                masks[f"{lname}.{pname}"] = getattr(module, f"{pname}_mask").detach().bool().clone()
                tprune.remove(module, pname)
    if method.removes_channels(cfg):
        # Removing a filter removes its BatchNorm channel too: mask it, so the pruned model
        # computes exactly what the physically compacted one will (see coupling.py).
        masks = coupled_channel_masks(model, masks)
        apply_masks(model, masks)
    targeted = [f"{lname}.{pname}" for lname, _, pname in tensors if f"{lname}.{pname}" in masks]
    return PruneResult(masks=masks, targeted=targeted)


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked weights, then the masked biases, folding what the bias of a removed
    filter still sends downstream into the next layer's bias (coupling.fold_pruned_biases)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            if not name.endswith(".bias"):
                params[name].mul_(mask.to(params[name].dtype))
    fold_pruned_biases(model, masks)
    with torch.no_grad():
        for name, mask in masks.items():
            if name.endswith(".bias"):
                params[name].mul_(mask.to(params[name].dtype))
