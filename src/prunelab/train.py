"""The training loop, shared by train and finetune (one loop, two callers), and prediction.

Fast on CPU by construction: the data set is an in-memory uint8 tensor augmented per batch,
activations are channels_last, and bf16 autocast is used where the hardware has it. Runs are
seeded per epoch, so an interrupted run resumed from its last epoch ends bit-identical.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from prunelab.data import Split, normalize, random_crop_flip
from prunelab.errors import UserError
from prunelab.io import atomic_path, torch_load
from prunelab.params import TrainParams


@cache
def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device = 'cuda': no CUDA device here; use 'auto' or 'cpu'")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """bf16 autocast where the device computes it natively, else fp32."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


@contextlib.contextmanager
def channels_last(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Run `model` on `device` in channels_last (fast convs on CPU and GPU), then give it back
    in the layout it came in: pruning code flattens weights with .view(), which needs it."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    was_channels_last = (
        bool(weights)
        and weights[0].is_contiguous(memory_format=torch.channels_last)
        and not weights[0].is_contiguous()
    )
    model.to(device).to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to("cpu").to(
            memory_format=torch.channels_last if was_channels_last else torch.contiguous_format
        )


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    seconds: float


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up to `peak` over `warmup` of the steps, then linear decay to zero."""
    warm = max(1, round(total * warmup))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def make_optimizer(model: nn.Module, cfg: TrainParams) -> torch.optim.SGD:
    # No weight decay on BN parameters and biases: it only fights their scale.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


class MaskKeeper:
    """Keeps pruned weights exactly zero while training: gradients, momentum and the weights
    themselves are masked after every step, so weight decay and momentum cannot revive them."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        self.pairs = [(params[name], mask.to(params[name].dtype)) for name, mask in masks.items()]

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
) -> list[EpochRecord]:
    """Train `model` in place for cfg.epochs; returns one record per epoch.

    With `resume_file`, state is saved after every epoch and a matching file (same
    `fingerprint`) is resumed from, then removed once training completes.
    """
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    with channels_last(model, device):
        return _fit(model, train, cfg, device, dtype, val, masks, resume_file, fingerprint, on_epoch, label)


def _fit(
    model: nn.Module,
    train: Split,
    cfg: TrainParams,
    device: torch.device,
    dtype: torch.dtype,
    val: Split | None,
    masks: dict[str, torch.Tensor] | None,
    resume_file: Path | None,
    fingerprint: str,
    on_epoch: Callable[[EpochRecord], None] | None,
    label: str,
) -> list[EpochRecord]:
    optimizer = make_optimizer(model, cfg)
    keeper = MaskKeeper(model, masks) if masks else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    history: list[EpochRecord] = []
    start_epoch = 0
    if resume_file is not None and resume_file.is_file():
        state = torch_load(resume_file)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            history = [EpochRecord(**r) for r in state["history"]]
            start_epoch = len(history)
    for record in history:
        if on_epoch:
            on_epoch(record)

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
            task = progress.add_task(
                f"{label} epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, stats=""
            )
            generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            order = torch.randperm(len(train), generator=generator)
            model.train()
            started = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for i in range(steps_per_epoch):
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                flips = first_flips[idx] ^ bool(epoch % 2) if cfg.alternating_flip else None
                images = random_crop_flip(train.images[idx], cfg.translate, generator, flips)
                x = normalize(images.to(device, non_blocking=True))
                y = train.labels[idx].to(device, non_blocking=True)
                lr = lr_at(epoch * steps_per_epoch + i, total_steps, cfg.lr, cfg.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast(device, dtype):
                    logits = model(x)
                    loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if keeper:
                    keeper.before_step()
                optimizer.step()
                if keeper:
                    keeper.after_step(optimizer)
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
                progress.update(task, advance=1, stats=f"loss {loss_sum / seen:.3f}")
            val_loss = val_acc = None
            last = epoch + 1 == cfg.epochs
            scheduled = cfg.val_every > 0 and (epoch + 1) % cfg.val_every == 0
            if val is not None and len(val) and (last or scheduled):
                logits = predict(model, val.images, batch_size=1000, device=device, dtype=dtype)
                val_loss = nn.functional.cross_entropy(logits, val.labels).item()
                val_acc = (logits.argmax(1) == val.labels).float().mean().item()
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
                console.print(f"{label} epoch {epoch + 1}/{cfg.epochs}: {stats} ({record.seconds:.0f} s)")
            if resume_file is not None:
                state = {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": [asdict(r) for r in history],
                }
                with atomic_path(resume_file) as tmp:
                    torch.save(state, tmp)
            if on_epoch:
                on_epoch(record)
    if resume_file is not None:
        resume_file.unlink(missing_ok=True)
    return history


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor) -> None:
    """airbench's whitening init of the first conv, from (up to 5,000) uint8 training images:
    its filters become the top principal directions of the image patches, each with its
    negation, so its outputs start decorrelated.

    Unlike airbench, every filter keeps the norm of the default init instead of 1/√eigenvalue:
    a BatchNorm follows and sets each channel's scale anyway, and with whitening's scales the
    filters' norms would rank them by *inverse* importance, which norm-based pruning of conv1
    (the seed experiment) would then follow. Equal norms also give every filter the same
    effective learning rate."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise UserError("train.whiten: the model has no Conv2d; set train.whiten: false")
    c, (kh, kw) = conv.in_channels, conv.kernel_size
    dims = c * kh * kw
    if conv.groups != 1 or conv.out_channels % 2 or conv.out_channels > 2 * dims or images.shape[1] != c:
        raise UserError(
            f"train.whiten: the first conv ({c}→{conv.out_channels}, {kh}×{kw}) needs an even "
            f"out_channels ≤ {2 * dims} and {c}-channel input images; set train.whiten: false"
        )
    x = normalize(images[:5000]).float()
    patches = x.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, dims)
    _, eigenvectors = torch.linalg.eigh((patches.T @ patches).double() / len(patches))
    keep = conv.out_channels // 2
    norm = conv.weight.detach().flatten(1).norm(dim=1).mean()
    top = eigenvectors.T.flip(0)[:keep]  # unit norm, largest eigenvalue first
    filters = (top * norm).reshape(keep, c, kh, kw).to(conv.weight.dtype)
    conv.weight.data.copy_(torch.cat([filters, -filters]))
    if conv.bias is not None:
        conv.bias.data.zero_()


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift a batch by (dy, dx) pixels, filling the border by reflection."""
    pad = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = nn.functional.pad(x, (pad,) * 4, mode="reflect")
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    tta: str = "none",
) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images, test-time augmented as `tta` says
    (none, flip, flip_translate: see EvaluateParams.tta)."""
    if tta not in ("none", "flip", "flip_translate"):
        raise ValueError(f"unknown tta mode {tta!r}")

    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return (model(x).float() + model(x.flip(-1)).float()) / 2

    device = device or next(model.parameters()).device
    was_training = model.training
    chunks = []
    with channels_last(model.eval(), device):
        for start in range(0, len(images), batch_size):
            x = normalize(images[start : start + batch_size].to(device))
            with autocast(device, dtype):
                logits = model(x).float() if tta == "none" else mirrored(x)
                if tta == "flip_translate":
                    # each one-pixel shift once, the mirror with one of them: 4 passes
                    shifted = model(translate(x, 1, 1)).float() + model(translate(x, -1, -1).flip(-1)).float()
                    logits = (logits + shifted / 2) / 2
            chunks.append(logits.cpu())
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, 10)
