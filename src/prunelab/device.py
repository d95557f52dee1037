"""Where and in what precision models run: resolved once from params, passed down.

Used by training, prediction and measuring alike, so the three agree on the device, on bf16
autocast and on channels_last.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from prunelab.errors import UserError
from prunelab.gpu_claims import Claim, claim_device

CPU = torch.device("cpu")


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    flags = _cpuinfo().split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    info = _cpuinfo()
    return next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
        "unknown CPU",
    )


def cpu_flags() -> list[str]:
    """The vector extensions that decide a CPU's speed and rounding: an AVX2-only CPU trains in
    fp32, one with avx512_bf16 or AMX in bf16."""
    flags = set(_cpuinfo().split())
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]


def cpu_description() -> str:
    """The CPU's model and the vector extensions that decide its speed: which kind of CPU gave a
    figure."""
    return f"{cpu_model()} ({', '.join(cpu_flags()) or 'no AVX2'})"


def resolve_device(name: str) -> torch.device:
    """`cpu`, or a GPU this process claims for its lifetime (see gpu_claims): with `auto`
    where CUDA is present, with `cuda` always."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return CPU
    if not torch.cuda.is_available():
        raise UserError("train.device = 'cuda': no CUDA device here; use 'auto' or 'cpu'")
    return torch.device("cuda", _gpu_claim().index)


@cache
def _gpu_claim() -> Claim:
    """Claimed once per process and held until it exits (the cache keeps the lock file open);
    every stage in the process uses the same GPU."""
    claim = claim_device(torch.cuda.device_count())
    torch.cuda.set_device(claim.index)
    # Same params, same machine kind, same numbers: cuDNN and cuBLAS pick deterministic
    # kernels (cuBLAS reads its workspace setting when its first handle is made, after this).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return claim


def device_description(device: torch.device) -> str:
    """What metrics record as the device: the CPU's model and vector extensions, or the GPU's
    name and index."""
    if device.type != "cuda":
        return f"cpu: {cpu_description()}"
    return f"{device} ({torch.cuda.get_device_name(device)})"


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """bf16 autocast where the device computes it natively, else fp32."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


class Runtime(NamedTuple):
    """Where a run computes and in what precision."""

    device: torch.device
    dtype: torch.dtype


def resolve_runtime(device: str, precision: str) -> Runtime:
    """The one place train.device and train.precision become a device and a dtype: a command
    resolves them once and passes them down, to `fit` too."""
    where = resolve_device(device)
    return Runtime(where, resolve_precision(precision, where))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


@contextlib.contextmanager
def channels_last(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Run `model` on `device` in channels_last (fast convs on CPU and GPU), then give it back
    on the device and in the layout it came in: pruning code flattens weights with .view(),
    which needs it, and scoring inside a training loop on a GPU must leave the model there."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    home = next(model.parameters(), torch.empty(0)).device
    was_channels_last = (
        bool(weights)
        and weights[0].is_contiguous(memory_format=torch.channels_last)
        and not weights[0].is_contiguous()
    )
    model.to(device).to(memory_format=torch.channels_last)
    hooks = [_run_in_nchw(conv) for conv in onednn_unsafe_convs(model)] if device.type == "cpu" else []
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()
        model.to(home).to(memory_format=torch.channels_last if was_channels_last else torch.contiguous_format)


# oneDNN's CPU kernel for the weight gradient of a strided 1×1 conv in channels_last, when the
# conv has fewer input channels than one register block (8 with AVX2, 16 with AVX-512), writes
# past its workspace: it hangs, crashes or returns wrong gradients (oneDNN issue #6035, open in
# torch 2.15). A CIFAR ResNet's shortcut is such a conv once it is narrow or pruned narrow.
ONEDNN_IC_BLOCK = 16


def onednn_unsafe_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The convs that the oneDNN bug above reaches in channels_last on a CPU."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and max(m.stride) > 1
        and m.in_channels // m.groups < ONEDNN_IC_BLOCK
    ]


def _run_in_nchw(conv: nn.Conv2d) -> torch.utils.hooks.RemovableHandle:
    """Route `conv` to oneDNN's plain-layout kernel, which is right: PyTorch picks channels_last
    when either the input or the weight is, so both go back to the plain layout. The weight may
    be computed (weight_orig * weight_mask while gradual pruning trains), so its sources do too."""
    for tensor in [*conv.parameters(recurse=False), *conv.buffers(recurse=False)]:
        if tensor.dim() == 4:  # clone: a (O, I, 1, 1) tensor counts as contiguous in either layout
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return conv.register_forward_pre_hook(lambda _, args: (args[0].contiguous(), *args[1:]))
