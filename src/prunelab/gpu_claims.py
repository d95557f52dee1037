"""One GPU per experiment process: `dvc queue start -j N` on a machine with N GPUs runs N stage
processes at once, and DVC does not assign devices, so each process claims one.

A claim is an exclusive `flock` on one file per physical device in a machine-wide folder. The
kernel drops the lock when the process exits, however it exits (crash and `kill -9`
included), so a claim can never outlive its process and no clean-up is needed. Devices are
named by their physical id from CUDA_VISIBLE_DEVICES, so processes that see different subsets
still agree on which device is which. Only processes of prunelab take part; pin a process to a
device yourself with CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from prunelab.errors import UserError

LOCK_DIR_ENV = "PRUNELAB_LOCK_DIR"


def lock_folder(env: Mapping[str, str]) -> Path:
    """Where running prunelab processes hold their locks (GPU claims, CPU shares):
    PRUNELAB_LOCK_DIR, else a machine-wide folder. Machine-wide on purpose: queued experiments
    run in their own temporary workspaces, and two clones on one machine share its cores and GPUs."""
    return Path(env.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"prunelab-{os.getuid()}" / "devices")


@dataclass
class Claim:
    index: int
    """CUDA's logical device index in this process (what `cuda:<index>` means here)."""
    physical_id: str
    """The device's id in CUDA_VISIBLE_DEVICES (its index when the variable is unset)."""
    lock: IO[str]
    """Held open for the claim's lifetime: closing it, or the process ending, releases it."""

    def release(self) -> None:
        self.lock.close()


def visible_device_ids(count: int, env: Mapping[str, str]) -> list[str]:
    """Physical ids of the `count` devices this process sees, in CUDA's logical order."""
    spec = env.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return [str(i) for i in range(count)]
    return [part.strip() for part in spec.split(",") if part.strip()][:count]


def claim_device(
    count: int,
    *,
    env: Mapping[str, str] | None = None,
    lock_dir: Path | None = None,
    poll_seconds: float = 1.0,
    timeout_seconds: float | None = None,
) -> Claim:
    """Claim the first free device of the `count` this process sees; when every one is held by
    another prunelab process, wait for one to be released (`timeout_seconds`, None = forever)."""
    env = os.environ if env is None else env
    ids = visible_device_ids(count, env)
    if not ids:
        raise UserError(
            "no CUDA device to claim: CUDA_VISIBLE_DEVICES is empty; unset it or use train.device: cpu"
        )
    folder = lock_dir or lock_folder(env)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{LOCK_DIR_ENV}={folder}: cannot create the device lock folder ({exc})") from None
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    announced = False
    while True:
        for index, physical_id in enumerate(ids):
            claim = _try_lock(folder / f"cuda-{physical_id}.lock", index, physical_id)
            if claim:
                return claim
        if deadline is not None and time.monotonic() >= deadline:
            raise UserError(
                f"every visible GPU ({', '.join(ids)}) is claimed by another prunelab process "
                f"(locks in {folder}); run fewer queue jobs or set CUDA_VISIBLE_DEVICES"
            )
        if not announced:
            print(f"prunelab: all {len(ids)} visible GPUs are claimed; waiting for one", file=sys.stderr)
            announced = True
        time.sleep(poll_seconds)


def _try_lock(path: Path, index: int, physical_id: str) -> Claim | None:
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    # who holds it, for anyone looking at the folder (the lock, not this text, is the claim)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return Claim(index, physical_id, handle)
