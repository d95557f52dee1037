"""Which layers can take it? Prune each layer (or coupled group) alone and watch accuracy.

Layers tied by residual additions are pruned together as one group: pruning one side alone
would never remove a channel, and the analysis would flatter it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from prunelab.coupling import coupled_conv_groups
from prunelab.criteria import Gradients, computed_once
from prunelab.methods import resolve_method
from prunelab.models import prunable_layers
from prunelab.params import PruneParams, SensitivityParams
from prunelab.pruning import prune_model


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
    gradients: Gradients | None = None,
) -> dict[str, dict[str, float]]:
    """{unit name: {amount: validation accuracy}}; a unit is named by its layers joined by '+'."""
    curves: dict[str, dict[str, float]] = {}
    for unit in analysis_units(model, method):
        curve = {}
        for amount in amounts:
            pruned = copy.deepcopy(model)
            prune_model(pruned, base.one_shot(method, amount, unit), gradients=gradients)
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
    gradients: Gradients | None = None,
) -> Derived:
    """Accuracy of the derived per-layer amounts against uniform pruning of the same layers at
    the same overall sparsity (counted from the masks)."""
    layers = list(per_layer)
    derived_model = copy.deepcopy(model)
    result = prune_model(
        derived_model, base.one_shot(method, 0.0, layers, per_layer=per_layer), gradients=gradients
    )
    sparsity = result.targeted_sparsity
    uniform_model = copy.deepcopy(model)
    uniform = prune_model(
        uniform_model, base.one_shot(method, round(sparsity, 4), layers), gradients=gradients
    )
    return Derived(
        per_layer,
        score(derived_model),
        sparsity,
        round(sparsity, 4),
        score(uniform_model),
        uniform.targeted_sparsity,
    )


def analyse(
    model: nn.Module,
    base: PruneParams,
    cfg: SensitivityParams,
    score: Callable[[nn.Module], float],
    gradients: Gradients | None = None,
) -> dict[str, Any]:
    """The whole analysis, as the sensitivity stage writes it: per method, each unit's curve,
    the derived per-layer amounts and their comparison with uniform pruning. Every pruning is a
    one-shot copy of `model`, so `gradients` (gradient criteria) are computed once."""
    reference = score(model)
    gradients = computed_once(gradients) if gradients is not None else None
    results: dict[str, dict] = {}
    for method in cfg.methods:
        curves = layer_curves(model, base, method, cfg.amounts, score, gradients)
        per_layer = derive_amounts(curves, reference, cfg.budget)
        comparison = compare_with_uniform(model, base, method, per_layer, score, gradients)
        results[method] = {"curves": curves, "derived": asdict(comparison)}
    return {"val_acc_dense": reference, "budget": cfg.budget, "methods": results}
