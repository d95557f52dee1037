"""CPU threads per stage process: the machine's cores shared among the prunelab stages running
on it at once.

`dvc queue start -j N` runs N stage processes side by side, and torch gives each every core by
default: N × cores threads on `cores` cores wait on each other at every parallel region. So a
stage registers itself while it runs (an exclusive `flock` on a file of its own in the folder
that GPU claims use; the kernel drops it when the process ends, however it ends) and takes
cores // (stages running, itself included) threads. The training and prediction loops call
`rebalance()`, which looks again every few seconds: two stages started at once first count
1 and 2, and a stage left alone takes the freed cores back. A stage alone takes every core, as
torch would.

The thread count can change the last bits of a result (reductions split differently), so
metrics record it, and PRUNELAB_THREADS=N pins it: set it for bit-identical reruns of a
parallel queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from prunelab.errors import UserError
from prunelab.gpu_claims import lock_folder

THREADS_ENV = "PRUNELAB_THREADS"
RECHECK_SECONDS = 2.0
"""How often `rebalance` counts the running stages again (a glob and a few flock calls)."""


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))


def threads_for(cores: int, running: int, env: Mapping[str, str]) -> int:
    """PRUNELAB_THREADS if set, else an equal share of the cores (at least one)."""
    pinned = env.get(THREADS_ENV, "").strip()
    if pinned:
        if not pinned.isdigit() or int(pinned) < 1:
            raise UserError(f"{THREADS_ENV}={pinned!r}: give a whole number of threads ≥ 1, or unset it")
        return int(pinned)
    return max(1, cores // max(1, running))


@dataclass
class _Share:
    folder: Path | None
    """The registration folder; None when registering failed (then the stage counts as alone)."""
    env: Mapping[str, str]
    checked: float = 0.0


# This process's share while `cpu_share` runs: torch's thread count is per process too.
_current: _Share | None = None


@contextlib.contextmanager
def cpu_share(env: Mapping[str, str] | None = None, lock_dir: Path | None = None) -> Iterator[int]:
    """Register this process as a running stage, set torch's threads to its share, and yield
    that count; the registration ends with the block (or the process)."""
    global _current
    env = os.environ if env is None else env
    folder = lock_dir or lock_folder(env)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path, handle = _register(folder)
    except OSError:  # a read-only or odd temp dir: count as alone rather than fail the stage
        path, handle = None, None
    share = _Share(folder if path else None, env)
    previous, _current = _current, share
    try:
        yield _take(share)
    finally:
        _current = previous
        if path is not None and handle is not None:
            path.unlink(missing_ok=True)
            handle.close()


def rebalance() -> None:
    """Take this process's share again if RECHECK_SECONDS have passed since the last count, so
    that it follows stages that started or ended meanwhile. Called from the main thread's loops
    (torch's thread setting only holds for the thread that makes it); a no-op outside
    `cpu_share`."""
    share = _current
    if share is not None and time.monotonic() - share.checked >= RECHECK_SECONDS:
        _take(share)


def _take(share: _Share) -> int:
    running = running_stages(share.folder) if share.folder else 1
    threads = threads_for(cpu_cores(), running, share.env)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    share.checked = time.monotonic()
    return threads


def running_stages(folder: Path) -> int:
    """Registered stages whose process still runs (its file is locked); files left by processes
    that ended are removed."""
    running = 0
    for path in folder.glob("cpu-*.lock"):
        try:
            handle = path.open("a")
        except OSError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                running += 1
            else:
                path.unlink(missing_ok=True)
    return running


def _register(folder: Path) -> tuple[Path, IO[str]]:
    """Lock a file under a temporary name, then give it its counted name, so that no other
    process ever sees it unlocked and takes it for a stale one."""
    staging = folder / f"starting-{os.getpid()}"
    handle = staging.open("w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    path = folder / f"cpu-{os.getpid()}.lock"
    staging.rename(path)
    return path, handle
