"""Honest numbers: accuracy from predictions, sparsity counted from zero weights, MACs, latency
measured side by side, sizes on disk."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab.device import CPU, autocast, channels_last, dtype_name
from prunelab.models import prunable_layers
from prunelab.predict import accuracy


def accuracy_report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    preds = logits.argmax(1)
    n = len(classes)
    confusion = torch.bincount(labels * n + preds, minlength=n * n).view(n, n)
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    return {
        "acc": round(accuracy(logits, labels), 6),
        "per_class_acc": {c: round(a, 6) for c, a in zip(classes, per_class.tolist(), strict=True)},
    }


def scoring_setup(
    tta: str,
    dtype: torch.dtype,
    device: torch.device,
    batch_size: int,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, Any]:
    """What a test score depends on besides the weights; a score is reused only under the same."""
    data = hashlib.sha256(images.numpy().tobytes())
    data.update(labels.numpy().tobytes())
    return {
        "tta": tta,
        "precision": dtype_name(dtype),
        "device": device.type,
        "batch_size": batch_size,  # oneDNN picks kernels, and so roundings, by shape
        "test_data": data.hexdigest()[:16],
    }


def reusable_scores(
    digests: Mapping[str, str], setup: Mapping[str, Any], earlier: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[dict[str, Any], str]]:
    """{model: (its entry, the metrics file it is in)} for each model whose exact checkpoint
    (`digests`: model → checkpoint_sha256) an earlier evaluate (`earlier`: path → its metrics)
    scored under the same `setup`."""
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for source, metrics in earlier.items():
        if metrics.get("scoring") != setup:
            continue
        entries = {e["checkpoint_sha256"]: e for e in metrics.values() if isinstance(e, dict) and "acc" in e}
        for name, digest in digests.items():
            if name not in found and digest in entries:
                found[name] = (entries[digest], source)
    return found


def compacted_twins(metas: Mapping[str, Mapping[str, Any]], digests: Mapping[str, str]) -> dict[str, str]:
    """{masked model: its compaction} among the given models. A compact checkpoint records the
    digest of the masked checkpoint it was made from and checked against (the compact stage), so
    the two compute the same function and one score serves both."""
    by_digest = {digest: name for name, digest in digests.items()}
    twins = {}
    for name, meta in metas.items():
        source = by_digest.get((meta.get("compacted_from") or {}).get("sha256", ""))
        if source is not None and source != name:
            twins[source] = name
    return twins


def confusion_rows(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> list[dict[str, str]]:
    """One row per test image, the shape DVC's confusion template reads."""
    preds = logits.argmax(1).tolist()
    return [
        {"actual": classes[a], "predicted": classes[p]} for a, p in zip(labels.tolist(), preds, strict=True)
    ]


def sparsity_report(model: nn.Module) -> dict[str, Any]:
    """Zero counts of every prunable layer's weight, and of all parameters."""
    layers: dict[str, dict[str, Any]] = {}
    zeros_total = weights_total = 0
    for name, module in prunable_layers(model).items():
        weight = module.weight.detach()
        zeros = int((weight == 0).sum())
        entry: dict[str, Any] = {
            "zeros": zeros,
            "total": weight.numel(),
            "sparsity": round(zeros / weight.numel(), 6),
        }
        if weight.ndim > 1:  # whole output channels that are zero: what compaction can remove
            entry["zero_channels"] = int((weight.flatten(1) == 0).all(1).sum())
            entry["channels"] = weight.shape[0]
        layers[name] = entry
        zeros_total += zeros
        weights_total += weight.numel()
    params = [p.detach() for p in model.parameters()]
    params_total = sum(p.numel() for p in params)
    params_nonzero = sum(int(p.count_nonzero()) for p in params)
    return {
        "sparsity": round(zeros_total / max(1, weights_total), 6),
        "params": params_total,
        "params_nonzero": params_nonzero,
        "params_zero": params_total - params_nonzero,
        "layers": layers,
    }


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one 32×32 image in the model's Conv and Linear layers, counted by
    forward hooks as thop and ptflops do (bias adds, BatchNorm, pooling and activations are
    not counted; neither does torch.utils.flop_counter). A dispatch-mode counter gives the same
    total on prunelab's models but imports torch._dynamo on first use, about 0.9 s in every
    stage process and sweep point."""
    macs = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.modules.conv._ConvNd):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            per_output = module.in_features
        macs += output.numel() * per_output

    layers = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)]
    hooks = [m.register_forward_hook(count) for m in layers]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 32, 32))
    finally:
        for hook in hooks:
            hook.remove()
    return macs


def compare_latency(
    models: Mapping[Hashable, nn.Module],
    batch: int,
    dtype: torch.dtype,
    min_run_time: float = 1.0,
    rounds: int = 3,
    device: torch.device = CPU,
) -> dict[Hashable, dict[str, float]]:
    """Latency of several models in eager PyTorch on `device` (channels_last, `dtype`
    autocast), measured by `interleaved_latency`."""
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    with contextlib.ExitStack() as placed:
        for model in models.values():
            placed.enter_context(channels_last(model.eval(), device))
        with torch.no_grad(), autocast(device, dtype):
            calls = {name: functools.partial(model, x) for name, model in models.items()}
            return interleaved_latency(calls, min_run_time, rounds, device)


def interleaved_latency(
    calls: Mapping[Hashable, Callable[[], Any]],
    min_run_time: float = 1.0,
    rounds: int = 3,
    device: torch.device = CPU,
) -> dict[Hashable, dict[str, float]]:
    """Latency of several calls, measured in interleaved rounds (each call `min_run_time` in
    all): a busy or throttling machine drifts by ±10 % over minutes, and interleaving makes the
    drift fall on every call alike, so their ratios hold. Median and IQR in ms of all timed
    blocks (timed_blocks), for eager models and onnxruntime sessions alike."""
    times: dict[Hashable, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()  # warm-up: oneDNN and onnxruntime pick their kernels on the first call
            times[name] += timed_blocks(call, min_run_time / rounds, device)
    out = {}
    for name, samples in times.items():
        q1, median, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
        out[name] = {"median_ms": round(median * 1e3, 3), "iqr_ms": round((q3 - q1) * 1e3, 3)}
    return out


def timed_blocks(call: Callable[[], Any], budget: float, device: torch.device) -> list[float]:
    """Seconds per call of `call`, one sample per block of calls, for `budget` seconds in all.
    A block lasts about 10 ms (one call if a call is longer), so the timer's own cost stays
    small; the GPU is synchronised around each block, so a CUDA time is the kernels' time and
    not their launch. torch.utils.benchmark's blocked_autorange overshot its budget about 2×."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    call()
    sync()
    once = time.perf_counter() - start
    per_block = max(1, round(0.01 / max(once, 1e-6)))
    samples: list[float] = []
    spent = 0.0
    while spent < budget or not samples:
        start = time.perf_counter()
        for _ in range(per_block):
            call()
        sync()
        block = time.perf_counter() - start
        samples.append(block / per_block)
        spent += block
    return samples


def same_shapes(models: Mapping[str, nn.Module]) -> dict[str, str]:
    """{model: the first of `models` with its exact layers and tensor shapes}. Dense kernels take
    as long whatever the weights hold (a masked model multiplies its zeros too), so such models
    share one latency measurement."""
    first: dict[str, str] = {}
    shared = {}
    for name, model in models.items():
        shapes = [(key, tuple(t.shape)) for key, t in model.state_dict().items()]
        shared[name] = first.setdefault(f"{model!r}{shapes}", name)
    return shared


def speedups(latency_ms: Mapping[Hashable, float], reference: Hashable) -> dict[Hashable, float]:
    """Each model's speed-up against `reference`, from latencies measured in the same run."""
    return {name: round(latency_ms[reference] / ms, 3) for name, ms in latency_ms.items()}


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), rounded as metrics are."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return round(statistics.fmean(values), 6), round(std, 6)


def file_bytes(path: str | Path) -> dict[str, int]:
    """Size on disk, and gzip-compressed (what zeros in a dense tensor really save)."""
    data = Path(path).read_bytes()
    return {"bytes": len(data), "bytes_gzip": len(gzip.compress(data, compresslevel=6, mtime=0))}
