"""Atomic file writes and checkpoints that load without running code.

Every output goes through `atomic_path`: a temporary file beside the target that is renamed
over it only when complete, so a crash or kill never leaves a half-written file under its final
name, and a failed stage leaves the previous output intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab.errors import UserError

CHECKPOINT_FORMAT = "prunelab.checkpoint/1"


class StagedOutputs:
    """Outputs written to temporary paths beside their targets, moved into place together once
    every one is complete: a stage that fails half-way replaces none of its earlier outputs."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, Path]] = []  # (staged file, target, its temp dir)

    def path(self, target: str | Path) -> Path:
        """A temporary path (file or directory) that will replace `target`."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        staged = tmp / target.name
        self._staged.append((staged, target, tmp))
        return staged

    def write_text(self, target: str | Path, text: str) -> None:
        self.path(target).write_text(text)

    def write_json(self, target: str | Path, data: Any) -> None:
        self.write_text(target, to_json(data))

    def save_checkpoint(self, target: str | Path, ckpt: Checkpoint) -> None:
        torch.save(ckpt.to_dict(), self.path(target))

    def _commit(self) -> None:
        for staged, target, _ in self._staged:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(staged, target)

    def _discard(self) -> None:
        for _, _, tmp in self._staged:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    """Stage outputs; they replace their targets only if the block completes."""
    outputs = StagedOutputs()
    try:
        yield outputs
        outputs._commit()
    finally:
        outputs._discard()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that replaces `target` on success."""
    with staged_outputs() as outputs:
        yield outputs.path(target)


def to_json(data: Any) -> str:
    """Strict JSON: a NaN or infinity is a bug upstream and raises instead of writing `NaN`,
    which JSON parsers (and `dvc metrics`) reject."""
    return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, to_json(data))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; run the stage that writes it first") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); delete it and rerun its stage") from None


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
    with staged_outputs() as outputs:
        outputs.save_checkpoint(path, ckpt)


def torch_load(path: str | Path) -> Any:
    """torch.load restricted to tensors and plain containers: a pickle that would run code is
    refused instead of executed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; run the stage that writes it first")
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
