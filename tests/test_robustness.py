"""Interruptions: kill -9 during training, then rerun → the same final weights and metrics."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from prunelab.checkpoints import load_checkpoint
from tests.conftest import ROOT, write_params

EPOCHS = 6


def _train(tmp: Path, params: Path, data_dir: Path, tag: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        str(ROOT / "stages/train.py"),
        "--params",
        str(params),
        "--data",
        str(data_dir),
        "--out",
        str(tmp / f"{tag}.pt"),
        "--metrics",
        str(tmp / f"{tag}.json"),
        "--live",
        str(tmp / f"{tag}-live"),
        "--resume",
        str(tmp / "resume.pt"),
    ]
    return subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _state_digest(path: Path) -> str:
    state = load_checkpoint(path).state_dict
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    return digest.hexdigest()


def test_kill_9_mid_training_then_rerun_resumes_to_identical_weights(tmp_path: Path, data_dir: Path) -> None:
    params = write_params(
        tmp_path / "params.yaml", {"train": {"epochs": EPOCHS, "batch_size": 32, "lr": 0.05, "val_every": 1}}
    )
    reference = _train(tmp_path, params, data_dir, "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    assert not (tmp_path / "resume.pt").exists()

    victim = _train(tmp_path, params, data_dir, "resumed")
    deadline = time.time() + 300
    while not (tmp_path / "resume.pt").exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "training finished before it could be killed"
    assert not (tmp_path / "resumed.pt").exists()  # no half-written checkpoint under its name
    done_epochs = len(torch.load(tmp_path / "resume.pt", weights_only=True)["history"])
    assert 1 <= done_epochs < EPOCHS

    rerun = _train(tmp_path, params, data_dir, "resumed")
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert _state_digest(tmp_path / "resumed.pt") == _state_digest(tmp_path / "reference.pt")
    drop_wall_clock = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
    assert drop_wall_clock(json.loads((tmp_path / "resumed.json").read_text())) == drop_wall_clock(
        json.loads((tmp_path / "reference.json").read_text())
    )
    val_curve = (tmp_path / "resumed-live/plots/metrics/val/acc.tsv").read_text().splitlines()
    assert len(val_curve) == EPOCHS + 1  # the curves are whole again: replayed epochs + new ones
