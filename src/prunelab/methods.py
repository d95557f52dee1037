"""Pruning methods: one registry where built-in and plugin methods stand on equal footing.

Every method is a `PruningMethod`: one `step` that prunes more of the targets until a fraction of
the final amount is pruned, whatever its reach: one tensor at a time (torch.nn.utils.prune's
functions and plugins), all targets jointly (global_unstructured), or channel groups found by
Torch-Pruning's DepGraph (the group_* criteria). A method prunes a *count* of units (weights,
or channels for structured methods) from what is still unpruned; prunelab turns `amount` into
those counts itself, so the final fraction is exact relative to the dense model however many
steps reach it (torch's PruningContainer would otherwise compound fractional amounts).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.utils.prune as tprune
from torch import nn

from prunelab.amounts import layer_amount, step_count
from prunelab.criteria import CRITERIA, Gradients, channel_masks, needs_gradients
from prunelab.errors import UserError
from prunelab.params import PruneParams
from prunelab.plugins import is_import_path, load_object

Unit = Literal["weight", "channel"]
Reach = Literal["tensor", "joint", "groups"]


@dataclass
class Targets:
    """What one pruning run prunes, and how much of it each step has pruned so far."""

    model: nn.Module
    layers: dict[str, nn.Module]
    """The targeted layers by name (prune.targets minus prune.exclude)."""
    tensors: list[tuple[str, nn.Module, str]]
    """(layer name, layer, parameter name) of every targeted tensor."""
    cfg: PruneParams
    gradients: Gradients | None = None
    pruned: dict[str, int] = field(default_factory=dict)
    """Units pruned so far, by tensor ('conv1.weight'), or '*' for a joint method."""


Step = Callable[[Targets, float], None]
"""Prunes more of `targets` until `fraction` (0 < f ≤ 1) of the final amount is pruned."""


@dataclass(frozen=True)
class PruningMethod:
    """The one protocol of a pruning method; build one with `per_tensor`, `joint` or `by_groups`."""

    name: str
    unit: Unit
    """What `amount` counts: single weights, or slices along `prune.dim` (filters for dim 0)."""
    reach: Reach
    """What one decision ranks: one tensor, all targets jointly, or DepGraph channel groups."""
    step: Step
    summary: str = ""
    stochastic: Callable[[PruneParams], bool] = lambda p: False
    """Whether the result depends on prune.seed (sweeps then repeat it over sweep.seeds)."""
    needs_gradients: bool = False
    """Whether it scores with loss gradients, so that callers must pass `gradients`."""

    def removes_channels(self, cfg: PruneParams) -> bool:
        """Whether it zeroes whole output channels, which compaction removes (MACs saved)."""
        return self.unit == "channel" and cfg.dim == 0


TensorPrune = Callable[[nn.Module, str, int, PruneParams], None]
"""Prunes `count` more units of one tensor, as torch.nn.utils.prune's functions do."""
JointPrune = Callable[[list[tuple[nn.Module, str]], int, PruneParams], None]
"""Prunes `count` more units across all targeted tensors at once."""
GroupMasks = Callable[[nn.Module, list[str], float, PruneParams, Gradients | None], dict[str, torch.Tensor]]
"""Keep-masks of every conv weight in the targeted channel groups once a fraction is pruned."""


def units_of(tensor: torch.Tensor, unit: Unit, dim: int) -> int:
    if unit == "weight":
        return tensor.numel()
    if not -tensor.dim() <= dim < tensor.dim():
        raise UserError(f"prune.dim = {dim}: out of range for a tensor of shape {tuple(tensor.shape)}")
    return tensor.shape[dim]


def per_tensor(name: str, unit: Unit, prune: TensorPrune, **details) -> PruningMethod:
    """A method that prunes each targeted tensor on its own (its prune.per_layer amount, if any)."""

    def step(targets: Targets, fraction: float) -> None:
        cfg = targets.cfg
        for lname, module, pname in targets.tensors:
            key = f"{lname}.{pname}"
            total = units_of(getattr(module, pname), unit, cfg.dim)
            round_to = cfg.round_to if unit == "channel" else 1
            count = step_count(fraction, *layer_amount(cfg, lname), total=total, round_to=round_to)
            prune(module, pname, count - targets.pruned.get(key, 0), cfg)
            targets.pruned[key] = count

    return PruningMethod(name, unit, "tensor", step, **details)


def joint(name: str, prune: JointPrune, **details) -> PruningMethod:
    """A method that ranks the weights of all targeted tensors together (a global method)."""

    def step(targets: Targets, fraction: float) -> None:
        tensors = [(m, p) for _, m, p in targets.tensors]
        total = sum(getattr(m, p).numel() for m, p in tensors)
        count = step_count(fraction, targets.cfg.amount, "prune.amount", total=total)
        prune(tensors, count - targets.pruned.get("*", 0), targets.cfg)
        targets.pruned["*"] = count

    return PruningMethod(name, "weight", "joint", step, **details)


def by_groups(name: str, masks_of: GroupMasks, **details) -> PruningMethod:
    """A method that prunes output channels by DepGraph groups (prune.scope local or global)."""

    def step(targets: Targets, fraction: float) -> None:
        modules = dict(targets.model.named_modules())
        keeps = masks_of(targets.model, list(targets.layers), fraction, targets.cfg, targets.gradients)
        for pname, keep in keeps.items():
            tprune.custom_from_mask(modules[pname.removesuffix(".weight")], "weight", keep)

    return PruningMethod(name, "channel", "groups", step, **details)


METHODS: dict[str, PruningMethod] = {}


def register_method(method: PruningMethod) -> PruningMethod:
    METHODS[method.name] = method
    return method


for _method in (
    per_tensor(
        "identity", "weight", lambda m, n, c, p: tprune.identity(m, n), summary="mask of ones (control)"
    ),
    per_tensor(
        "random_unstructured",
        "weight",
        lambda m, n, c, p: tprune.random_unstructured(m, n, amount=c),
        summary="random weights",
        stochastic=lambda p: True,
    ),
    per_tensor(
        "l1_unstructured",
        "weight",
        lambda m, n, c, p: tprune.l1_unstructured(m, n, amount=c),
        summary="smallest |w| per layer",
    ),
    per_tensor(
        "random_structured",
        "channel",
        lambda m, n, c, p: tprune.random_structured(m, n, amount=c, dim=p.dim),
        summary="random channels along prune.dim",
        stochastic=lambda p: True,
    ),
    per_tensor(
        "ln_structured",
        "channel",
        lambda m, n, c, p: tprune.ln_structured(m, n, amount=c, n=p.norm, dim=p.dim),
        summary="channels of smallest Ln norm (prune.n) along prune.dim",
    ),
    joint(
        "global_unstructured",
        lambda pairs, c, p: tprune.global_unstructured(
            pairs,
            pruning_method=tprune.L1Unstructured if p.criterion == "l1" else tprune.RandomUnstructured,
            # contiguous: training between steps may leave channels_last weights, which
            # global_unstructured's flattening (view) cannot take
            importance_scores={(m, n): getattr(m, n).detach().contiguous() for m, n in pairs},
            amount=c,
        ),
        summary="smallest |w| (or random, prune.criterion) across all targets together",
        stochastic=lambda p: p.criterion == "random",
    ),
):
    register_method(_method)


for _name, (_importance, _summary) in CRITERIA.items():
    register_method(
        by_groups(
            _name,
            lambda model, targets, fraction, p, gradients, make=_importance: channel_masks(
                model, targets, fraction, p, make(), gradients
            ),
            summary=f"{_summary}, Torch-Pruning (prune.scope local or global)",
            stochastic=lambda p, name=_name: name == "group_random",
            needs_gradients=needs_gradients(_importance()),
        )
    )


def resolve_method(name: str) -> PruningMethod:
    if name in METHODS:
        return METHODS[name]
    if not is_import_path(name):
        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(
            f"prune.method = '{name}': unknown method; {hint}built-in: {', '.join(METHODS)}, "
            "or an import path 'package.module:Name'"
        )
    return method_from_plugin(name, load_object(name, param="prune.method"))


def check_method_names(names: list[str], key: str, *, per_layer: bool = False) -> None:
    """Every name resolves to a method (built-in or plugin); with `per_layer`, none is a global
    (joint) method, which cannot prune one layer alone."""
    for name in names:
        method = resolve_method(name)
        if per_layer and method.reach == "joint":
            raise UserError(
                f"{key}: '{name}' prunes all layers jointly; per-layer analysis needs a per-layer method"
            )


def check_prune_params(cfg: PruneParams) -> PruningMethod:
    """The checks of prune.* that need the registry, run once after parsing; returns the method."""
    method = resolve_method(cfg.method)
    structured = method.unit == "channel"
    if cfg.round_to > 1 and not structured:
        raise UserError(
            f"prune.round_to = {cfg.round_to} applies to structured (channel) methods, not "
            f"'{cfg.method}'; set it to 1"
        )
    if method.reach == "groups" and cfg.dim != 0:
        raise UserError(
            f"prune.method = '{cfg.method}' prunes output channels by groups: it takes prune.dim 0"
        )
    check_per_layer(method, cfg)
    if cfg.scope == "global" and method.reach != "groups":
        raise UserError(
            f"prune.scope = global applies to the group_* methods, not '{cfg.method}' "
            "(global_unstructured is global already); set it to local"
        )
    if cfg.macs_reduction is not None and not method.removes_channels(cfg):
        raise UserError(
            f"prune.macs_reduction needs a structured method along dim 0 (ln_structured, "
            f"random_structured, …); got method '{cfg.method}', dim {cfg.dim}. Use "
            "prune.amount for unstructured pruning: zeros in dense tensors save no MACs"
        )
    return method


def check_per_layer(method: PruningMethod, cfg: PruneParams) -> None:
    if cfg.per_layer and method.reach == "joint":
        raise UserError(f"prune.per_layer: not applicable to the global method '{cfg.method}'; remove it")
    if cfg.per_layer and method.reach == "groups" and cfg.scope == "global":
        raise UserError(
            "prune.per_layer: a global ranking sets the per-layer ratios itself; remove it or "
            "set prune.scope: local"
        )


def method_from_plugin(name: str, obj: object) -> PruningMethod:
    """Wrap a BasePruningMethod subclass, or a function(module, name, amount, **options) in
    the style of torch.nn.utils.prune's functions, as a PruningMethod."""
    if inspect.isclass(obj) and issubclass(obj, tprune.BasePruningMethod):
        kind = getattr(obj, "PRUNING_TYPE", None)
        if kind not in ("unstructured", "structured"):
            raise UserError(
                f"prune.method: {name} must set PRUNING_TYPE to 'unstructured' or 'structured' (got {kind!r})"
            )
        takes_dim = "dim" in inspect.signature(obj.__init__).parameters

        def apply_class(module: nn.Module, pname: str, count: int, p: PruneParams) -> None:
            extra = {"dim": p.dim} if takes_dim and "dim" not in p.options else {}
            obj.apply(module, pname, amount=count, **extra, **p.options)

        unit: Unit = "channel" if kind == "structured" else "weight"
        return per_tensor(
            name,
            unit,
            apply_class,
            summary=(obj.__doc__ or "").strip().split("\n")[0],
            stochastic=lambda p: True,  # unknown: repeating a deterministic one costs little
        )
    if inspect.isfunction(obj) or (callable(obj) and not inspect.isclass(obj)):
        params = list(inspect.signature(obj).parameters)
        if len(params) < 3:
            raise UserError(
                f"prune.method: {name} must take (module, name, amount, **options) like "
                "torch.nn.utils.prune.l1_unstructured"
            )
        unit = "channel" if getattr(obj, "PRUNING_TYPE", "unstructured") == "structured" else "weight"
        return per_tensor(
            name,
            unit,
            lambda m, n, c, p: obj(m, n, c, **p.options),
            summary=(obj.__doc__ or "").strip().split("\n")[0],
            stochastic=lambda p: True,
        )
    raise UserError(
        f"prune.method: {name} is neither a torch.nn.utils.prune.BasePruningMethod subclass nor a "
        "function(module, name, amount, **options)"
    )
