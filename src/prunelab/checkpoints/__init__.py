"""Checkpoints: what rebuilds a model (architecture, kwargs, weights, masks), loaded without
running code (torch.load with weights_only)."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab.errors import UserError

CHECKPOINT_FORMAT = "prunelab.checkpoint/1"


@dataclass
class Checkpoint:
    """What is needed to rebuild a model: architecture, its arguments, weights, pruning masks."""

    arch: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": self.arch,
            "model_kwargs": self.model_kwargs,
            "state_dict": self.state_dict,
            "masks": self.masks,
            "meta": self.meta,
        }


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path`; stages pass a staged path (io.staged_outputs)."""
    torch.save(ckpt.to_dict(), path)


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of the file's sha256: names the exact checkpoint a score or a
    compaction came from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def torch_load(path: str | Path) -> Any:
    """torch.load restricted to tensors and plain containers: a pickle that would run code is
    refused instead of executed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; run the stage that writes it first")
    if not zipfile.is_zipfile(path):  # what torch.save writes; weights_only would blame pickling
        raise UserError(
            f"{path}: cannot read checkpoint (not a torch.save archive); is it truncated or another "
            "format? Run the stage that writes it again"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(
            f"{path}: refused to load: it is not a plain-tensor checkpoint and could run code "
            f"when unpickled ({first}). Only load checkpoints you trust, re-saved as a state_dict."
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise UserError(f"{path}: cannot read checkpoint ({exc}); is it truncated?") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    raw = torch_load(path)
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path}: not a prunelab checkpoint (no '{CHECKPOINT_FORMAT}' header); "
            "a plain state_dict is accepted only as train.init"
        )
    return Checkpoint(
        arch=raw["arch"],
        model_kwargs=raw["model_kwargs"],
        state_dict=raw["state_dict"],
        masks=raw.get("masks", {}),
        meta=raw.get("meta", {}),
    )


def load_init_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights to start from: a prunelab checkpoint's state_dict, or a plain state_dict."""
    raw = torch_load(path)
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT:
        return raw["state_dict"]
    if isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return raw
    raise UserError(f"train.init: {path} is neither a prunelab checkpoint nor a state_dict of tensors")


def load_state_into(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with an error that names the keys that do not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    if wrong_shape:
        problems.append(
            "shape mismatch "
            + _short([f"{k} {tuple(state_dict[k].shape)}≠{tuple(own[k].shape)}" for k in wrong_shape])
        )
    if problems:
        raise UserError(
            f"{source}: weights do not fit the model ({'; '.join(problems)}); "
            "check model.arch and model.kwargs"
        )
    model.load_state_dict(state_dict)


def _short(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', …' if len(items) > limit else ''}] ({len(items)})"
