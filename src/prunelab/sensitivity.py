"""Which layers can take it? Prune each layer (or coupled group) alone and watch accuracy.

Layers tied by residual additions are pruned together as one group: pruning one side alone
would never remove a channel, and the analysis would flatter it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from prunelab.compact import coupled_conv_groups
from prunelab.models import prunable_layers
from prunelab.params import PruneParams
from prunelab.prune import prune_model, resolve_method


def analysis_units(model: nn.Module, method: str) -> list[list[str]]:
    """What is pruned alone: coupled conv groups for structured methods (the classifier's
    outputs are classes, never pruned structurally); every layer for unstructured ones."""
    if resolve_method(method).unit == "channel":
        return coupled_conv_groups(model)
    return [[name] for name in prunable_layers(model)]


@dataclass
class Derived:
    per_layer: dict[str, float]
    val_acc: float
    sparsity: float
    uniform_amount: float
    uniform_val_acc: float
    uniform_sparsity: float


def layer_curves(
    model: nn.Module,
    base: PruneParams,
    method: str,
    amounts: list[float],
    score: Callable[[nn.Module], float],
) -> dict[str, dict[str, float]]:
    """{unit name: {amount: validation accuracy}}; a unit is named by its layers joined by '+'."""
    curves: dict[str, dict[str, float]] = {}
    for unit in analysis_units(model, method):
        curve = {}
        for amount in amounts:
            pruned = copy.deepcopy(model)
            prune_model(pruned, _params(base, method, unit, amount))
            curve[str(amount)] = score(pruned)
        curves["+".join(unit)] = curve
    return curves


def derive_amounts(curves: dict[str, dict[str, float]], reference: float, budget: float) -> dict[str, float]:
    """Per layer, the largest amount whose accuracy loss stays within `budget` (0 if none)."""
    derived: dict[str, float] = {}
    for unit, curve in curves.items():
        ok = [float(a) for a, acc in curve.items() if reference - acc <= budget]
        for layer in unit.split("+"):
            derived[layer] = max(ok, default=0.0)
    return derived


def compare_with_uniform(
    model: nn.Module,
    base: PruneParams,
    method: str,
    per_layer: dict[str, float],
    score: Callable[[nn.Module], float],
) -> Derived:
    """Accuracy of the derived per-layer amounts against uniform pruning of the same layers at
    the same overall sparsity (counted from the masks)."""
    layers = list(per_layer)
    derived_model = copy.deepcopy(model)
    result = prune_model(derived_model, _params(base, method, layers, 0.0, per_layer))
    sparsity = result.targeted_sparsity
    uniform_model = copy.deepcopy(model)
    uniform = prune_model(uniform_model, _params(base, method, layers, round(sparsity, 4)))
    return Derived(
        per_layer,
        score(derived_model),
        sparsity,
        round(sparsity, 4),
        score(uniform_model),
        uniform.targeted_sparsity,
    )


def _params(
    base: PruneParams, method: str, targets: list[str], amount: float, per_layer: dict | None = None
) -> PruneParams:
    return base.model_copy(
        update={
            "method": method,
            "amount": amount,
            "targets": targets,
            "exclude": [],
            "per_layer": per_layer or {},
            "schedule": "oneshot",
            "steps": 1,
            "finetune_between": 0,
        }
    )
