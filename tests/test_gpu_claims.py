"""One GPU per experiment process, simulated on the CPU: device counts, CUDA_VISIBLE_DEVICES,
waiting for a device, and claims released by crashed processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import prunelab.device
from prunelab.errors import UserError
from prunelab.gpu_claims import LOCK_DIR_ENV, claim_device, visible_device_ids

HOLDER = """
import sys, time
from pathlib import Path
from prunelab.gpu_claims import claim_device
claim = claim_device(int(sys.argv[1]), lock_dir=Path(sys.argv[2]), timeout_seconds=30, poll_seconds=0.05)
print(claim.index, claim.physical_id, flush=True)
time.sleep(60)
"""


def hold_in_subprocess(count: int, lock_dir: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    """A process that claims a device and holds it; returns it and the line it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(count), str(lock_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_each_claim_gets_its_own_device_until_released(tmp_path: Path) -> None:
    first = claim_device(2, env={}, lock_dir=tmp_path)
    second = claim_device(2, env={}, lock_dir=tmp_path)
    assert (first.index, second.index) == (0, 1)
    with pytest.raises(UserError, match=r"every visible GPU \(0, 1\) is claimed"):
        claim_device(2, env={}, lock_dir=tmp_path, timeout_seconds=0)
    first.release()
    assert claim_device(2, env={}, lock_dir=tmp_path, timeout_seconds=0).index == 0


def test_cuda_visible_devices_names_the_physical_device(tmp_path: Path) -> None:
    assert visible_device_ids(2, {"CUDA_VISIBLE_DEVICES": "3, 5"}) == ["3", "5"]
    assert visible_device_ids(3, {}) == ["0", "1", "2"]
    held = claim_device(2, env={"CUDA_VISIBLE_DEVICES": "5,3"}, lock_dir=tmp_path)
    assert (held.index, held.physical_id) == (0, "5")
    assert (tmp_path / "cuda-5.lock").read_text() == f"{os.getpid()}\n"
    # a process that sees devices 3 and 5 in the other order skips physical 5, which is held
    other = claim_device(2, env={"CUDA_VISIBLE_DEVICES": "3,5"}, lock_dir=tmp_path)
    assert (other.index, other.physical_id) == (0, "3")
    with pytest.raises(UserError, match="CUDA_VISIBLE_DEVICES is empty"):
        claim_device(1, env={"CUDA_VISIBLE_DEVICES": ""}, lock_dir=tmp_path)


def test_claims_across_processes_and_a_crash_releases_its_device(tmp_path: Path) -> None:
    first, line_a = hold_in_subprocess(2, tmp_path)
    second, line_b = hold_in_subprocess(2, tmp_path)
    try:
        assert sorted([line_a, line_b]) == ["0 0", "1 1"]
        with pytest.raises(UserError):
            claim_device(2, env={}, lock_dir=tmp_path, timeout_seconds=0)
        # a third experiment waits for a device, and gets the one a crashed process held
        got: list[int] = []
        waiter = threading.Thread(
            target=lambda: got.append(
                claim_device(2, env={}, lock_dir=tmp_path, timeout_seconds=20, poll_seconds=0.05).index
            )
        )
        waiter.start()
        time.sleep(0.3)
        assert not got  # still waiting
        crashed = first if line_a == "1 1" else second
        crashed.send_signal(signal.SIGKILL)  # no clean-up code runs
        crashed.wait()
        waiter.join(timeout=20)
        assert got == [1]
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_resolve_device_claims_one_gpu_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    selected: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    # another process already holds device 0
    holder, line = hold_in_subprocess(2, tmp_path)
    prunelab.device._gpu_claim.cache_clear()
    try:
        assert line == "0 0"
        assert prunelab.device.resolve_device("auto") == torch.device("cuda", 1)
        assert prunelab.device.resolve_device("cuda") == torch.device("cuda", 1)  # claimed once
        assert selected == [1]
        # same params, same GPU kind, same numbers: deterministic cuDNN and cuBLAS kernels
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert prunelab.device.resolve_device("cpu") == torch.device("cpu")
    finally:
        prunelab.device._gpu_claim.cache_clear()
        holder.kill()
        holder.wait()


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prunelab.device.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match=r"train\.device = 'cuda'"):
        prunelab.device.resolve_device("cuda")
