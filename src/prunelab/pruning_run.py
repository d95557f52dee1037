"""The pruning run a command actually runs, decided in one place: prune.* checked against the
registry, its method resolved once, per-layer amounts derived from the sensitivity analysis
(`prune.per_layer: from_sensitivity`), and the amount a cost target (`prune.macs_reduction`)
needs searched on the model; then pruned."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from prunelab.compact import compacted_macs
from prunelab.cost_search import amount_for_macs_reduction
from prunelab.criteria import Gradients
from prunelab.errors import UserError
from prunelab.io import read_json
from prunelab.methods import PruningMethod, check_prune_params
from prunelab.params import PruneParams
from prunelab.pruning import PruneResult, prune_model


@dataclass(frozen=True)
class PruningRun:
    """prune.* with every derived setting decided (targets, amounts, scope), and its method."""

    cfg: PruneParams
    method: PruningMethod

    @property
    def removes_channels(self) -> bool:
        """Whether it removes whole output channels: compaction then saves MACs."""
        return self.method.removes_channels(self.cfg)

    @property
    def fine_tunes_between_steps(self) -> bool:
        return self.cfg.steps > 1 and self.cfg.finetune_between > 0

    @property
    def needs_training_images(self) -> bool:
        """Whether pruning reads training images: loss gradients, or fine-tuning between steps."""
        return self.method.needs_gradients or self.fine_tunes_between_steps


def plan_run(cfg: PruneParams, sensitivity: Path) -> PruningRun:
    """The run `cfg` asks for, checked, with its method resolved; `sensitivity` is the sensitivity
    stage's metrics, read only for `prune.per_layer: from_sensitivity`."""
    method = check_prune_params(cfg)
    if cfg.per_layer == "from_sensitivity":
        cfg = with_derived_amounts(cfg, read_json(sensitivity))
    return PruningRun(cfg, method)


def run_pruning(
    model: nn.Module,
    run: PruningRun,
    *,
    gradients: Gradients | None = None,
    between_steps: Callable[[int], None] | None = None,
) -> tuple[PruningRun, PruneResult]:
    """Prune `model` in place as `run` says; returns the run with its amount decided (searched for
    a cost target) and the result. `gradients` and `between_steps` as for pruning.prune_model."""
    if run.cfg.macs_reduction is not None:
        amount = amount_for_macs_reduction(model, run.cfg, gradients, run.method)
        run = PruningRun(run.cfg.model_copy(update={"amount": amount}), run.method)
    result = prune_model(model, run.cfg, between_steps=between_steps, gradients=gradients, method=run.method)
    return run, result


def compacted_macs_of(model: nn.Module, run: PruningRun) -> int | None:
    """The MACs `model` pruned by `run` will have once compacted; None where compaction removes
    nothing (no whole output channel pruned)."""
    return compacted_macs(model) if run.removes_channels else None


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
