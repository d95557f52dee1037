"""The training loop, shared by train, finetune and fine-tuning between pruning steps.

Fast on CPU by construction: the data set is an in-memory uint8 tensor augmented per batch,
activations are channels_last, and bf16 autocast is used where the hardware has it. Runs are
seeded per epoch, so an interrupted run resumed from its last epoch ends bit-identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from prunelab.checkpoints import torch_load
from prunelab.data import Split, normalize, random_crop_flip
from prunelab.device import Runtime, autocast, channels_last, resolve_runtime
from prunelab.errors import UserError
from prunelab.io import atomic_path
from prunelab.params import FinetuneParams, TrainParams
from prunelab.predict import accuracy, predict
from prunelab.threads import rebalance


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    seconds: float


def steps_per_epoch(images: int, batch_size: int) -> int:
    return math.ceil(images / batch_size)


LRSchedule = Callable[[int, int], float]
"""(step, total steps) → learning rate."""


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up to `peak` over `warmup` of the steps, then linear decay to zero."""
    warm = max(1, round(total * warmup))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def make_optimizer(model: nn.Module, cfg: TrainParams) -> torch.optim.SGD:
    """SGD over the parameters that train. Each group's `lr_scale` multiplies the schedule's
    learning rate (fit applies it), so BatchNorm biases can learn faster (train.bias_lr_scale)."""
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    trained = [p for p in model.parameters() if p.requires_grad]
    weights = [p for p in trained if p.ndim > 1]
    biases = [p for p in trained if p.ndim <= 1 and id(p) in norm_biases]
    others = [p for p in trained if p.ndim <= 1 and id(p) not in norm_biases]
    # No weight decay on BN parameters and biases: it only fights their scale.
    groups = [
        {"params": weights, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": others, "weight_decay": 0.0, "lr_scale": 1.0},
        {"params": biases, "weight_decay": 0.0, "lr_scale": cfg.bias_lr_scale},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


@contextmanager
def frozen_while_training(model: nn.Module, cfg: TrainParams) -> Iterator[None]:
    """What stays as it is while training: the BatchNorm scales with train.bn_scale false (1
    from init), the first conv with train.whiten `frozen` (the whitening stem). Afterwards they
    take gradients again (gradient-based pruning criteria read them)."""
    frozen = []
    if not cfg.bn_scale:
        frozen += [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if cfg.whiten == "frozen":
        stem = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        frozen += [stem.weight, stem.bias] if stem is not None else []
    frozen = [p for p in frozen if p is not None and p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)


class MaskKeeper:
    """Keeps pruned weights exactly zero while training: gradients, momentum and the weights
    themselves are masked after every step, so weight decay and momentum cannot revive them."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        # masks come from pruning on the CPU; the model may already be on a GPU
        self.pairs = [
            (params[name], mask.to(params[name].device, params[name].dtype)) for name, mask in masks.items()
        ]

    def before_step(self) -> None:
        for param, mask in self.pairs:
            if param.grad is not None:
                param.grad.mul_(mask)

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        for param, mask in self.pairs:
            param.mul_(mask)
            buf = optimizer.state.get(param, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(mask)


class Lookahead:
    """airbench's look-ahead weights: every `EVERY` steps an exponential average of the weights
    (and BatchNorm statistics) takes a step towards them, and the weights are set to it. Its
    weight on the past grows as progress³, so early training runs freely and the last steps
    average. Pruned weights stay zero: the average of zeros is zero."""

    EVERY = 5

    def __init__(self, model: nn.Module) -> None:
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def step(self, model: nn.Module, step: int, total: int) -> None:
        """After optimizer step `step` (1-based) of `total`; the last step sets the average."""
        if step % self.EVERY and step < total:
            return
        decay = 1.0 if step >= total else 0.95**self.EVERY * (step / total) ** 3
        for name, value in model.state_dict().items():
            if name in self.average:
                self.average[name].lerp_(value, 1 - decay)
                value.copy_(self.average[name])


@dataclass
class Distillation:
    """Knowledge distillation while training (Hinton et al. 2015): a frozen `teacher` in eval
    mode, the KL divergence of the student's softened outputs from the teacher's weighted by
    `weight` (the label loss by 1 - weight), at `temperature`."""

    teacher: nn.Module
    weight: float
    temperature: float


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    weight: float,
    temperature: float,
    label_smoothing: float,
) -> torch.Tensor:
    """(1 - weight) · cross-entropy(student, labels) + weight · T² · KL(teacher_T ‖ student_T),
    where x_T = softmax(x / T); T² keeps the soft part's gradients at the hard part's scale."""
    hard = nn.functional.cross_entropy(student, labels, label_smoothing=label_smoothing)
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(student / temperature, dim=1),
        nn.functional.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - weight) * hard + weight * temperature**2 * soft


def pruned_weights_nonzero(model: nn.Module, masks: dict[str, torch.Tensor]) -> int:
    """Pruned positions (False in `masks`) whose weight is not zero: 0 unless masks leaked."""
    params = dict(model.named_parameters())
    return sum(int((params[name].detach()[~mask] != 0).sum()) for name, mask in masks.items())


def loss_gradients(
    train: Split, images: int, *, batch_size: int, device: torch.device, dtype: torch.dtype
) -> Callable[[nn.Module], None]:
    """A function that fills a model's parameter gradients with the summed cross-entropy
    gradients of the first `images` training images, not augmented, the model in eval mode (its
    BatchNorm statistics as deployed): what gradient-based pruning criteria score with."""
    selected = train.images[:images]
    labels = train.labels[:images]

    def fill(model: nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        with channels_last(model.eval(), device):
            for start in range(0, len(selected), batch_size):
                with autocast(device, dtype):
                    logits = model(normalize(selected[start : start + batch_size].to(device)))
                target = labels[start : start + batch_size].to(device)
                nn.functional.cross_entropy(logits.float(), target, reduction="sum").backward()

    return fill


def fit(
    model: nn.Module,
    train: Split,
    cfg: TrainParams,
    *,
    val: Split | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    resume_file: Path | None = None,
    fingerprint: str = "",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    label: str = "train",
    lr_schedule: LRSchedule | None = None,
    distill: Distillation | None = None,
    optimizer: Callable[[nn.Module, TrainParams], torch.optim.Optimizer] = make_optimizer,
    runtime: Runtime | None = None,
) -> list[EpochRecord]:
    """Train `model` in place for cfg.epochs; returns one record per epoch.

    With `resume_file`, state is saved after every epoch and a matching file (same
    `fingerprint`) is resumed from, then removed once training completes. `lr_schedule(step,
    total_steps)` replaces the cfg.lr / cfg.warmup schedule (learning-rate rewinding). With
    `distill` (weight above 0), the loss distils its teacher, which never trains. `optimizer`
    builds the optimiser from the model and cfg (an experiment may try another). `runtime` is
    the device and precision the calling command resolved; without it, cfg's are resolved.
    """
    device, dtype = runtime or resolve_runtime(cfg.device, cfg.precision)
    cfg = cfg.model_copy(update={"epochs": _epochs_in(cfg, dtype)})
    distill = distill if distill is not None and distill.weight > 0 else None
    teacher = distill.teacher.eval().requires_grad_(False) if distill else nn.Identity()
    with channels_last(model, device), frozen_while_training(model, cfg), channels_last(teacher, device):
        schedule = lr_schedule or (lambda step, total: lr_at(step, total, cfg.lr, cfg.warmup))
        run = _Run(
            cfg,
            device,
            dtype,
            val,
            masks,
            resume_file,
            fingerprint,
            on_epoch,
            label,
            schedule,
            distill,
            optimizer,
        )
        return _fit(model, train, run)


def planned_epochs(cfg: TrainParams) -> int:
    """cfg.epochs, with `auto` resolved for the precision this machine trains in."""
    return _epochs_in(cfg, resolve_runtime(cfg.device, cfg.precision).dtype)


def _epochs_in(cfg: TrainParams, dtype: torch.dtype) -> int:
    return cfg.epochs_in("bf16" if dtype == torch.bfloat16 else "fp32")


@dataclass(frozen=True)
class _Run:
    """One training run's settings, resolved by `fit`."""

    cfg: TrainParams
    device: torch.device
    dtype: torch.dtype
    val: Split | None
    masks: dict[str, torch.Tensor] | None
    resume_file: Path | None
    fingerprint: str
    on_epoch: Callable[[EpochRecord], None] | None
    label: str
    lr_schedule: LRSchedule
    distill: Distillation | None
    optimizer: Callable[[nn.Module, TrainParams], torch.optim.Optimizer]


def _fit(model: nn.Module, train: Split, run: _Run) -> list[EpochRecord]:
    cfg, device, dtype = run.cfg, run.device, run.dtype
    optimizer = run.optimizer(model, cfg)
    keeper = MaskKeeper(model, run.masks) if run.masks else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    per_epoch = steps_per_epoch(len(train), cfg.batch_size)
    total_steps = per_epoch * cfg.epochs
    history: list[EpochRecord] = []
    start_epoch = 0
    lookahead = Lookahead(model) if cfg.lookahead else None
    if run.resume_file is not None and run.resume_file.is_file():
        state = torch_load(run.resume_file)
        if state.get("fingerprint") == run.fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            history = [EpochRecord(**r) for r in state["history"]]
            start_epoch = len(history)
            if lookahead:
                lookahead.average = {k: v.to(device) for k, v in state["lookahead"].items()}
    for record in history:
        if run.on_epoch:
            run.on_epoch(record)

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
    ]
    console = Console()
    # Without a terminal (dvc repro, CI logs) bars never redraw: print a line per epoch instead.
    # Alternating flip: one fixed coin per image for the run, inverted every other epoch.
    first_flips = torch.rand(len(train), generator=torch.Generator().manual_seed(cfg.seed)) < 0.5
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        for epoch in range(start_epoch, cfg.epochs):
            task = progress.add_task(f"{run.label} epoch {epoch + 1}/{cfg.epochs}", total=per_epoch, stats="")
            generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            order = torch.randperm(len(train), generator=generator)
            model.train()
            started = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for i in range(per_epoch):
                rebalance()  # follow other stages starting or ending (threads.py)
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                flips = first_flips[idx] ^ bool(epoch % 2) if cfg.alternating_flip else None
                images = random_crop_flip(train.images[idx], cfg.translate, generator, flips)
                x = normalize(images.to(device, non_blocking=True))
                y = train.labels[idx].to(device, non_blocking=True)
                lr = run.lr_schedule(epoch * per_epoch + i, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                with autocast(device, dtype):
                    logits = model(x)
                    if run.distill is None:
                        loss = loss_fn(logits.float(), y)
                    else:
                        with torch.no_grad():
                            taught = run.distill.teacher(x).float()
                        loss = distillation_loss(
                            logits.float(),
                            taught,
                            y,
                            weight=run.distill.weight,
                            temperature=run.distill.temperature,
                            label_smoothing=cfg.label_smoothing,
                        )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if keeper:
                    keeper.before_step()
                optimizer.step()
                if keeper:
                    keeper.after_step(optimizer)
                if lookahead:
                    lookahead.step(model, epoch * per_epoch + i + 1, total_steps)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise UserError(
                        f"{run.label}: the loss became {loss_value} in epoch {epoch + 1}, step {i + 1} at "
                        f"lr {lr:.4g}: training diverged; lower the learning rate (train.lr, or "
                        "finetune.lr when fine-tuning) and run the stage again"
                    )
                loss_sum += loss_value * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
                progress.update(task, advance=1, stats=f"loss {loss_sum / seen:.3f}")
            val_loss = val_acc = None
            last = epoch + 1 == cfg.epochs
            scheduled = cfg.val_every > 0 and (epoch + 1) % cfg.val_every == 0
            if run.val is not None and len(run.val) and (last or scheduled):
                logits = predict(model, run.val.images, device=device, dtype=dtype)
                val_loss = nn.functional.cross_entropy(logits, run.val.labels).item()
                val_acc = accuracy(logits, run.val.labels)
            record = EpochRecord(
                epoch + 1,
                lr,
                loss_sum / seen,
                correct / seen,
                val_loss,
                val_acc,
                time.perf_counter() - started,
            )
            history.append(record)
            stats = f"loss {record.train_loss:.3f}" + (
                f" val_acc {val_acc:.4f}" if val_acc is not None else ""
            )
            progress.update(task, stats=stats)
            if not console.is_terminal:
                console.print(f"{run.label} epoch {epoch + 1}/{cfg.epochs}: {stats} ({record.seconds:.0f} s)")
            if run.resume_file is not None:
                state = {
                    "fingerprint": run.fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": [asdict(r) for r in history],
                    **({"lookahead": lookahead.average} if lookahead else {}),
                }
                with atomic_path(run.resume_file) as tmp:
                    torch.save(state, tmp)
            if run.on_epoch:
                run.on_epoch(record)
    if run.resume_file is not None:
        run.resume_file.unlink(missing_ok=True)
    return history


def fine_tuning_between_steps(
    model: nn.Module,
    train: Split,
    val: Split,
    train_cfg: TrainParams,
    finetune: FinetuneParams,
    epochs: int,
    steps: int,
    runtime: Runtime | None = None,
) -> Callable[[int], None]:
    """The `between_steps` callback of gradual pruning: `epochs` of fine-tuning (finetune.*
    settings, seeded per step) after step k. It runs while the pruning parametrisation
    (weight = weight_orig * mask) is still active, so pruned weights stay zero."""
    step_cfg = finetune.train_params(train_cfg, epochs=epochs)

    def after_step(step: int) -> None:
        fit(
            model,
            train,
            step_cfg.model_copy(update={"seed": step_cfg.seed + step}),
            val=val,
            label=f"step {step}/{steps} fine-tune",
            runtime=runtime,
        )

    return after_step
