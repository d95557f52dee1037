"""Pruning: one registry where built-in and plugin methods stand on equal footing.

A method prunes a *count* of units (weights, or channels for structured methods) from what is
still unpruned; prunelab turns `amount` into those counts itself, so the final fraction is exact
relative to the dense model however many steps reach it (torch's PruningContainer would
otherwise compound fractional amounts step after step).
"""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.utils.prune as tprune
from torch import nn

from prunelab.amounts import final_count, step_fractions
from prunelab.compact import compacted_macs, coupled_channel_masks, fold_pruned_biases
from prunelab.errors import UserError
from prunelab.groups import CRITERIA, Gradients, channel_masks, needs_gradients
from prunelab.models import prunable_layers
from prunelab.params import PruneParams
from prunelab.plugins import is_import_path, load_object

Unit = Literal["weight", "channel"]
LocalPrune = Callable[[nn.Module, str, int, PruneParams], None]
GlobalPrune = Callable[[list[tuple[nn.Module, str]], int, PruneParams], None]
ChannelSelect = Callable[
    [nn.Module, list[str], float, PruneParams, Gradients | None], dict[str, torch.Tensor]
]


@dataclass(frozen=True)
class PruningMethod:
    name: str
    unit: Unit
    """What `amount` counts: single weights, or slices along `prune.dim` (filters for dim 0)."""
    local: LocalPrune | None = None
    """Prunes `count` more units of one tensor."""
    joint: GlobalPrune | None = None
    """Prunes `count` more units across all targeted tensors at once (global methods)."""
    channels: ChannelSelect | None = None
    """Dependency-aware: keep-masks of every conv weight in the targeted channel groups once a
    fraction of the final amount is pruned (the group_* methods; prune.scope applies)."""
    summary: str = ""
    stochastic: Callable[[PruneParams], bool] = lambda p: False
    """Whether the result depends on prune.seed (sweeps then repeat it over sweep.seeds)."""
    needs_gradients: bool = False
    """Whether it scores with loss gradients, so that callers must pass `gradients`."""


METHODS: dict[str, PruningMethod] = {}


def register_method(method: PruningMethod) -> PruningMethod:
    METHODS[method.name] = method
    return method


for _method in (
    PruningMethod(
        "identity",
        "weight",
        lambda m, n, c, p: tprune.identity(m, n),
        summary="mask of ones (control)",
    ),
    PruningMethod(
        "random_unstructured",
        "weight",
        lambda m, n, c, p: tprune.random_unstructured(m, n, amount=c),
        summary="random weights",
        stochastic=lambda p: True,
    ),
    PruningMethod(
        "l1_unstructured",
        "weight",
        lambda m, n, c, p: tprune.l1_unstructured(m, n, amount=c),
        summary="smallest |w| per layer",
    ),
    PruningMethod(
        "random_structured",
        "channel",
        lambda m, n, c, p: tprune.random_structured(m, n, amount=c, dim=p.dim),
        summary="random channels along prune.dim",
        stochastic=lambda p: True,
    ),
    PruningMethod(
        "ln_structured",
        "channel",
        lambda m, n, c, p: tprune.ln_structured(m, n, amount=c, n=p.norm, dim=p.dim),
        summary="channels of smallest Ln norm (prune.n) along prune.dim",
    ),
    PruningMethod(
        "global_unstructured",
        "weight",
        joint=lambda pairs, c, p: tprune.global_unstructured(
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
        PruningMethod(
            _name,
            "channel",
            channels=lambda model, targets, fraction, p, gradients, make=_importance: channel_masks(
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
        if per_layer and method.joint is not None:
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
    if method.channels is not None and cfg.dim != 0:
        raise UserError(
            f"prune.method = '{cfg.method}' prunes output channels by groups: it takes prune.dim 0"
        )
    _check_per_layer(method, cfg)
    if cfg.scope == "global" and method.channels is None:
        raise UserError(
            f"prune.scope = global applies to the group_* methods, not '{cfg.method}' "
            "(global_unstructured is global already); set it to local"
        )
    if cfg.macs_reduction is not None and (not structured or cfg.dim != 0):
        raise UserError(
            f"prune.macs_reduction needs a structured method along dim 0 (ln_structured, "
            f"random_structured, …); got method '{cfg.method}', dim {cfg.dim}. Use "
            "prune.amount for unstructured pruning: zeros in dense tensors save no MACs"
        )
    return method


def _check_per_layer(method: PruningMethod, cfg: PruneParams) -> None:
    if cfg.per_layer and method.joint is not None:
        raise UserError(f"prune.per_layer: not applicable to the global method '{cfg.method}'; remove it")
    if cfg.per_layer and method.channels is not None and cfg.scope == "global":
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
        return PruningMethod(
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
        return PruningMethod(
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


# ---------------------------------------------------------------------------------------------
# Targets and amounts


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


def units_of(tensor: torch.Tensor, unit: Unit, dim: int) -> int:
    if unit == "weight":
        return tensor.numel()
    if not -tensor.dim() <= dim < tensor.dim():
        raise UserError(f"prune.dim = {dim}: out of range for a tensor of shape {tuple(tensor.shape)}")
    return tensor.shape[dim]


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
) -> PruneResult:
    """Prune `model` in place as `cfg` says and make it permanent (prune.remove).

    `between_steps(k)` runs after step k < steps, with the masks still active (for fine-tuning
    between the steps of gradual pruning). `gradients` fills in loss gradients for the methods
    that score with them (`needs_gradients`); the others never call it.
    """
    if isinstance(cfg.per_layer, str):
        raise UserError(
            "prune.per_layer = from_sensitivity must be resolved against metrics/sensitivity.json first"
        )
    method = resolve_method(cfg.method)
    layers = select_targets(model, cfg)
    pairs = [
        (lname, m, pname)
        for lname, m in layers.items()
        for pname in cfg.parameters
        if getattr(m, pname, None) is not None
    ]
    if not pairs:
        raise UserError(f"prune.parameters: none of {cfg.parameters} exist on the targeted layers")
    _check_per_layer(method, cfg)
    modules = dict(model.named_modules())
    fractions = step_fractions(cfg.steps, cfg.schedule)
    done: dict[str, int] = {}
    # torch's random methods draw from the global generator: seed it from prune.seed (and
    # restore it after), so a random mask depends on the params alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for step, fraction in enumerate(fractions, start=1):
            if method.channels is not None:
                for name, keep in method.channels(model, list(layers), fraction, cfg, gradients).items():
                    tprune.custom_from_mask(modules[name.removesuffix(".weight")], "weight", keep)
            elif method.joint is not None:
                total = sum(getattr(m, p).numel() for _, m, p in pairs)
                target = round(fraction * final_count(cfg.amount, total, "prune.amount"))
                method.joint([(m, p) for _, m, p in pairs], target - done.get("*", 0), cfg)
                done["*"] = target
            else:
                for lname, module, pname in pairs:
                    key = f"{lname}.{pname}"
                    amount = cfg.per_layer.get(lname, cfg.amount)
                    total = units_of(getattr(module, pname), method.unit, cfg.dim)
                    amount_key = f"prune.per_layer.{lname}" if lname in cfg.per_layer else "prune.amount"
                    round_to = cfg.round_to if method.unit == "channel" else 1
                    target = round(fraction * final_count(amount, total, amount_key, round_to))
                    method.local(module, pname, target - done.get(key, 0), cfg)
                    done[key] = target
            if between_steps is not None and step < len(fractions):
                between_steps(step)
    masks: dict[str, torch.Tensor] = {}
    for lname, module in modules.items():  # the targets, and convs coupled to them (group_*)
        for pname in ("weight", "bias"):
            if hasattr(module, f"{pname}_mask"):
                masks[f"{lname}.{pname}"] = getattr(module, f"{pname}_mask").detach().bool().clone()
                tprune.remove(module, pname)
    if method.unit == "channel" and cfg.dim == 0:
        # Removing a filter removes its BatchNorm channel too: mask it, so the pruned model
        # computes exactly what the physically compacted one will (see compact.py).
        masks = coupled_channel_masks(model, masks)
        apply_masks(model, masks)
    targeted = [f"{lname}.{pname}" for lname, _, pname in pairs if f"{lname}.{pname}" in masks]
    return PruneResult(masks=masks, targeted=targeted)


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked weights, then the masked biases, folding what the bias of a removed
    filter still sends downstream into the next layer's bias (compact.fold_pruned_biases)."""
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


def amount_for_macs_reduction(
    model: nn.Module, cfg: PruneParams, gradients: Gradients | None = None
) -> float:
    """The smallest uniform amount (to 1/1024) at which `model`, pruned as `cfg` says and
    compacted, keeps at most (1 − cfg.macs_reduction) of its MACs."""
    if cfg.macs_reduction is None:
        raise ValueError("cfg.macs_reduction is not set")
    return amount_for_cost(
        model, cfg, 1 / (1 - cfg.macs_reduction), f"prune.macs_reduction = {cfg.macs_reduction}", gradients
    )


def amount_for_cost(
    model: nn.Module, cfg: PruneParams, ratio: float, key: str, gradients: Gradients | None = None
) -> float:
    """The smallest amount (to 1/1024) at which `model`, pruned as `cfg` says, is `ratio` times
    cheaper: fewer MACs once compacted for a method that removes output channels, compression
    (params / nonzero params) for an unstructured one. Both grow with the amount (per-layer
    counts only grow), so bisection finds it. `key` names the setting in errors; `gradients` as
    for prune_model."""
    unit = resolve_method(cfg.method).unit
    if unit == "channel" and cfg.dim != 0:
        raise UserError(
            f"{key}: a cost target needs whole output channels removed; '{cfg.method}' with "
            f"prune.dim = {cfg.dim} removes none. Set prune.dim: 0 or give an amount"
        )
    what = "fewer MACs once compacted" if unit == "channel" else "compression (params / nonzero)"

    def cost(m: nn.Module) -> int:
        if unit == "channel":
            return compacted_macs(m)
        return sum(int(p.count_nonzero()) for p in m.parameters())

    dense = cost(model)

    gradients = computed_once(gradients) if gradients is not None else None

    def ratio_at(amount: float) -> float:
        trial = copy.deepcopy(model)
        prune_model(
            trial, cfg.one_shot(cfg.method, amount, cfg.targets, exclude=cfg.exclude), gradients=gradients
        )
        return dense / max(1, cost(trial))

    lo, hi = 0.0, 0.9 if unit == "channel" else 0.999  # beyond 0.9 small layers lose every channel
    if (reached := ratio_at(hi)) < ratio:
        raise UserError(
            f"{key}: even amount {hi} of {cfg.method} on the targets gives only {reached:.2f}× "
            f"{what}, not {ratio:g}×; target more layers or ask for less"
        )
    while hi - lo > 1 / 1024:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ratio_at(mid) >= ratio else (mid, hi)
    return hi


def computed_once(gradients: Gradients) -> Gradients:
    """`gradients`, computed on the first model and copied onto the next ones: right where every
    model is an unpruned copy of the same weights (the trials of a one-shot search)."""
    computed: dict[str, torch.Tensor] = {}

    def fill(model: nn.Module) -> None:
        if not computed:
            gradients(model)
            computed.update({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
            return
        for name, param in model.named_parameters():
            if name in computed:
                param.grad = computed[name].clone()

    return fill
