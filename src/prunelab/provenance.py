"""Where a result was made: the block every metrics file carries under `provenance`.

The same params give other numbers on another kind of machine (bf16 kernels round differently;
`train.epochs: auto` trains 10 epochs in bf16 and 6 in fp32), so each metrics file says which
CPU and flags, GPU, precision, threads, baseline epochs and library versions made it. `dvc exp
show` lists these as columns, and `prunelab diff` marks a difference between two results made on
different machines or recipes as such.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import torch

from prunelab.device import cpu_flags, cpu_model, dtype_name

LIBRARIES = ("torch", "torchvision", "torch-pruning", "onnxruntime", "dvc")

MACHINE_KEYS = ("cpu", "cpu_flags", "gpu", "precision")
"""What makes two results come from different kinds of machine (threads only change last bits)."""


def provenance(device: torch.device, dtype: torch.dtype, epochs: int | None) -> dict[str, Any]:
    """The provenance block of a metrics file made on `device` in `dtype`; `epochs` is how many
    epochs the baseline behind the result was trained (train.epochs resolved), None if unknown."""
    return {
        "cpu": cpu_model(),
        "cpu_flags": " ".join(cpu_flags()) or "none",
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
        "precision": dtype_name(dtype),
        "threads": torch.get_num_threads(),
        "epochs": epochs,
        "versions": {name: _version(name) for name in LIBRARIES},
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
