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

from prunelab.compact import coupled_conv_groups
from prunelab.errors import UserError
from prunelab.groups import Gradients
from prunelab.models import prunable_layers
from prunelab.params import PruneParams, SensitivityParams
from prunelab.prune import computed_once, prune_model, resolve_method


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


def plot_rows(curves: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per unit and amount, the shape of DVC's by-layer plot."""
    return [
        {"layer": unit, "amount": float(a), "val_acc": acc}
        for unit, c in curves.items()
        for a, acc in c.items()
    ]


def with_derived_amounts(cfg: PruneParams, summary: dict) -> PruneParams:
    """prune.per_layer: from_sensitivity → the amounts derived for prune.method, on those layers
    (`summary` is what the sensitivity stage wrote)."""
    methods = summary.get("methods", {})
    if cfg.method not in methods:
        raise UserError(
            f"prune.per_layer = from_sensitivity: no sensitivity results for prune.method '{cfg.method}' "
            f"(analysed: {', '.join(methods) or 'none'}); add it to sensitivity.methods"
        )
    per_layer = {k: v for k, v in methods[cfg.method]["derived"]["per_layer"].items() if v > 0}
    if not per_layer:
        raise UserError(
            "prune.per_layer = from_sensitivity: no layer stays within sensitivity.budget at any amount"
        )
    return cfg.model_copy(update={"per_layer": per_layer, "targets": list(per_layer), "exclude": []})
