"""Outputs that appear whole or not at all, and strict JSON.

Every output goes through `staged_outputs` (or `atomic_path` for one file): temporary files
beside the targets, renamed over them only once all are complete, so a crash, a kill or a bad
input found late never leaves a half-written file under its final name, and a failed stage
leaves its previous outputs intact.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prunelab.errors import UserError


class StagedOutputs:
    """Outputs written to temporary paths beside their targets, moved into place together once
    every one is complete: a stage that fails half-way replaces none of its earlier outputs."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, Path]] = []  # (staged file, target, its temp dir)

    def path(self, target: str | Path) -> Path:
        """A temporary path (file or directory) that will replace `target`. A staging folder of
        the same target left by a run that was killed before it could clean up is removed
        first: only one run writes a given output at a time (DVC locks the workspace, and queued
        experiments run in copies of it)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")  # mkdtemp's names
        for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            if staging.fullmatch(leftover.name):
                shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        staged = tmp / target.name
        self._staged.append((staged, target, tmp))
        return staged

    def write_text(self, target: str | Path, text: str) -> None:
        self.path(target).write_text(text)

    def write_json(self, target: str | Path, data: Any) -> None:
        self.write_text(target, to_json(data))

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
