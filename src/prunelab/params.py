"""The one schema for params.yaml, validated once before any work.

Every error names the key, the bad value and what is allowed, on one line; unknown keys get a
"did you mean". Defaults equal the shipped params.yaml, so a partial params file (another
project's, or a test's) is complete once loaded.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prunelab.errors import UserError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def check_amount(value: float | int) -> float | int:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"a fraction must lie in [0, 1] (got {value}); use an int for a count")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"a count must be ≥ 0 (got {value})")
    return value


Amount = Annotated[float | int, AfterValidator(check_amount)]
"""A fraction in [0, 1] of the units, or (an int) an absolute count."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: str = CIFAR10_URL
    """URL or local path of cifar-10-python.tar.gz (PRUNELAB_CIFAR10_ARCHIVE overrides it)."""
    val_size: Annotated[int, Field(ge=0, lt=50_000)] = 5000
    """Images held out of the 50,000 training images for validation; the test set is touched
    only by evaluate."""
    split_seed: int = 0


class ModelParams(Section):
    arch: str = "cnn"
    """Registry name (cnn, resnet20, …) or an import path 'pkg.module:factory'."""
    kwargs: dict[str, Any] = Field(default_factory=lambda: {"widths": [64, 128, 256]})


class TrainParams(Section):
    epochs: Annotated[int, Field(ge=0)] = 8
    batch_size: Annotated[int, Field(gt=0)] = 512
    lr: Annotated[float, Field(gt=0)] = 0.2
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.2
    translate: Annotated[int, Field(ge=0, le=8)] = 2
    """Random-crop augmentation: shift by up to this many pixels (reflect padding). Short
    schedules learn faster with less (airbench uses 2); 4 is the classic long-schedule value."""
    alternating_flip: bool = True
    """Flip each image in every other epoch (a random half in epoch 1, the other half in epoch
    2, …) instead of tossing a coin each time: every image is seen both ways (airbench)."""
    warmup: Fraction = 0.2
    """Fraction of steps over which the LR ramps up linearly; it then decays linearly to 0."""
    whiten: bool = True
    """Initialise the first conv from the training images (after airbench's whitening): its
    filters are the top principal directions of k×k patches, each with its negation, at the
    default init's norm. Only for training from scratch; needs out_channels even and
    ≤ 2·in_channels·k². The filters stay trainable (and prunable)."""
    val_every: Annotated[int, Field(ge=0)] = 4
    """Score the validation split after every n-th epoch and after the last (0: the last only).
    A pass costs ~3 s here, 4 % of an epoch: the 10-minute budget keeps it to two."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    init: str | None = None
    """Start from this checkpoint (a prunelab checkpoint or a plain state_dict of model.arch)
    instead of random weights; with epochs 0, train passes it through. Add the file to the
    train stage's deps in dvc.yaml."""


class PruneParams(Section):
    method: str = "ln_structured"
    """Registry name or import path 'pkg.module:Name' of a BasePruningMethod or function."""
    amount: Amount = 0.4
    """Final fraction (0..1) of targeted weights — of channels for structured methods — that
    are pruned, relative to the dense model; an int is an absolute count."""
    macs_reduction: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Instead of `amount`: remove at least this fraction of the model's MACs (0.5 halves
    them). prune finds the smallest uniform amount whose compacted model gets there; needs a
    structured (channel) method along dim 0."""
    round_to: Annotated[int, Field(ge=1)] = 1
    """Structured methods: keep a multiple of this many channels per layer (at least one
    multiple), e.g. 8 or 16 for the blocked conv kernels of oneDNN and tensor cores."""
    seed: int = 0
    """Seed of the random methods (random_unstructured, random_structured, criterion random)."""
    n: float | int | Literal["inf", "-inf", "fro", "nuc"] = 1
    dim: int = 0
    criterion: Literal["l1", "random"] = "l1"
    """Criterion of global_unstructured."""
    targets: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["conv1"])
    """Layer names, layer types (Conv2d, Linear) or 'all'."""
    exclude: list[str] = Field(default_factory=list)
    per_layer: dict[str, Amount] | Literal["from_sensitivity"] = Field(default_factory=dict)
    """{layer: amount} overrides, or 'from_sensitivity': the amounts the sensitivity stage
    derived for prune.method (then only those layers are pruned)."""
    parameters: Annotated[list[Literal["weight", "bias"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["weight"]
    )
    schedule: Literal["oneshot", "iterative", "agp"] = "oneshot"
    """oneshot: all at once; iterative: `steps` equal increments; agp: Zhu & Gupta's cubic
    schedule. Both gradual schedules end exactly at `amount`."""
    steps: Annotated[int, Field(ge=1)] = 1
    finetune_between: Annotated[int, Field(ge=0)] = 0
    """Epochs of fine-tuning (finetune.* settings) after each step but the last."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to a plugin method."""

    @field_validator("method")
    @classmethod
    def _method_exists(cls, value: str) -> str:
        from prunelab.prune import resolve_method  # the registry imports torch: load lazily

        resolve_method(value)
        return value

    @model_validator(mode="after")
    def _schedule_needs_steps(self) -> PruneParams:
        if self.schedule == "oneshot" and self.steps != 1:
            raise ValueError(
                f"prune.steps = {self.steps} needs prune.schedule iterative or agp (oneshot is 1 step)"
            )
        return self

    @model_validator(mode="after")
    def _structured_only(self) -> PruneParams:
        from prunelab.prune import resolve_method

        structured = resolve_method(self.method).unit == "channel"
        if self.round_to > 1 and not structured:
            raise ValueError(
                f"prune.round_to = {self.round_to} applies to structured (channel) methods, not "
                f"'{self.method}'; set it to 1"
            )
        if self.macs_reduction is not None:
            if not structured or self.dim != 0:
                raise ValueError(
                    f"prune.macs_reduction needs a structured method along dim 0 (ln_structured, "
                    f"random_structured, …); got method '{self.method}', dim {self.dim}. Use "
                    "prune.amount for unstructured pruning: zeros in dense tensors save no MACs"
                )
            if isinstance(self.per_layer, str) or self.per_layer:
                raise ValueError("prune.macs_reduction sets one uniform amount; remove prune.per_layer")
        return self

    @property
    def norm(self) -> float | str:
        return math.inf if self.n == "inf" else -math.inf if self.n == "-inf" else self.n


class FinetuneParams(Section):
    """Fine-tuning after pruning: the train loop with masks held; unset keys follow train.*."""

    epochs: Annotated[int, Field(ge=0)] = 1
    """0 passes the pruned model through unchanged."""
    lr: Annotated[float, Field(gt=0)] = 0.05
    warmup: Fraction = 0.1
    seed: int = 1

    def train_params(self, train: TrainParams, epochs: int | None = None) -> TrainParams:
        return train.model_copy(
            update={
                "epochs": self.epochs if epochs is None else epochs,
                "lr": self.lr,
                "warmup": self.warmup,
                "seed": self.seed,
            }
        )


class CompactParams(Section):
    tolerance: Annotated[float, Field(gt=0)] = 1e-3
    """Largest |logit difference| allowed between the masked and the compact model (fp32)."""


class EvaluateParams(Section):
    batch_size: Annotated[int, Field(gt=0)] = 1000
    tta: Literal["none", "flip", "flip_translate"] = "flip_translate"
    """Test-time augmentation: none; flip averages each image with its mirror; flip_translate
    adds the image shifted one pixel down-right and its mirror shifted up-left (4 passes)."""

    @field_validator("tta", mode="before")
    @classmethod
    def _tta_bool(cls, value: Any) -> Any:
        # true/false were the values before the modes existed.
        return {True: "flip", False: "none"}.get(value, value) if isinstance(value, bool) else value

    latency_batch_sizes: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: [1, 128]
    )
    latency_seconds: Annotated[float, Field(gt=0)] = 1.0
    """Minimum measuring time per model and batch size (torch.utils.benchmark)."""


class SensitivityParams(Section):
    methods: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["ln_structured", "l1_unstructured"]
    )
    amounts: Annotated[list[Fraction], Field(min_length=1)] = Field(default_factory=lambda: [0.25, 0.5, 0.75])
    budget: Fraction = 0.01
    """Largest validation-accuracy loss a layer may cost at its derived amount (0.01 = 1 point)."""
    val_images: Annotated[int, Field(ge=0)] = 1000

    @field_validator("methods")
    @classmethod
    def _methods_exist(cls, value: list[str]) -> list[str]:
        from prunelab.prune import resolve_method

        for name in value:
            if resolve_method(name).joint is not None:
                raise ValueError(
                    f"'{name}' prunes all layers jointly; per-layer sensitivity needs a per-layer method"
                )
        return value


class SweepParams(Section):
    methods: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: [
            "l1_unstructured",
            "random_unstructured",
            "ln_structured",
            "random_structured",
            "global_unstructured",
        ]
    )
    amounts: Annotated[list[Amount], Field(min_length=1)] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    )
    targets: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["Conv2d"])
    """What every sweep point prunes (the other prune.* settings, e.g. n and dim, are shared)."""
    exclude: list[str] = Field(default_factory=list)
    val_images: Annotated[int, Field(ge=0)] = 2500
    """Score each point on the first N images of the validation split (0 = all of it). Every
    point sees the same images, so comparisons are paired; cost per point is one torch import
    plus N forward passes, so lower N as the model grows."""
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    """prune.seed values: a method whose masks depend on the seed (random ones, plugins) is
    scored once per seed and reported as mean ± std; deterministic ones run once."""

    @field_validator("methods")
    @classmethod
    def _methods_exist(cls, value: list[str]) -> list[str]:
        from prunelab.prune import resolve_method

        for name in value:
            resolve_method(name)
        return value

    def prune_params(self, base: PruneParams, method: str, amount: float | int) -> PruneParams:
        """The prune settings of one sweep point: one-shot, uniform over the sweep's targets,
        at exactly `amount`, with the first of sweep.seeds."""
        return base.model_copy(
            update={
                "method": method,
                "amount": amount,
                "macs_reduction": None,
                "round_to": 1,
                "seed": self.seeds[0],
                "targets": self.targets,
                "exclude": self.exclude,
                "per_layer": {},
                "schedule": "oneshot",
                "steps": 1,
                "finetune_between": 0,
            }
        )


class Params(Section):
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    prune: PruneParams = Field(default_factory=PruneParams)
    finetune: FinetuneParams = Field(default_factory=FinetuneParams)
    compact: CompactParams = Field(default_factory=CompactParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    sweep: SweepParams = Field(default_factory=SweepParams)
    sensitivity: SensitivityParams = Field(default_factory=SensitivityParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found; pass --params PATH") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections (data, model, …) at top level")
    return parse_params(raw, source=str(path))


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        # A union (e.g. per_layer: mapping or 'from_sensitivity') reports one error per branch;
        # the first branch is the one users mean, so keep one message per key.
        lines = {}
        for error in exc.errors():
            error["loc"] = tuple(part for part in error["loc"] if not _is_branch_tag(part))
            lines.setdefault(error["loc"][:2], _describe(error))
        raise UserError(f"{source}: " + "; ".join(lines.values())) from None
    except UserError as exc:  # raised by a validator that resolves a plugin
        raise UserError(f"{source}: {exc.message}") from None


def _is_branch_tag(part: object) -> bool:
    """pydantic names union branches in error locations, e.g. 'literal['from_sensitivity']'."""
    return isinstance(part, str) and ("[" in part or "(" in part or part in {"int", "float", "str", "bool"})


def _describe(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        allowed = sorted(_fields_at(loc[:-1]))
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key '{key}': {hint}allowed: {', '.join(allowed)}"
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if isinstance(value, dict):  # a check across keys already names them in its message
        return message
    return f"{key} = {value!r}: {message}"


def _fields_at(loc: list[str]) -> set[str]:
    model: type[BaseModel] = Params
    for part in loc:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return set()
        model = annotation
    return set(model.model_fields)
