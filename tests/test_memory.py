"""Freed memory kept for reuse (memory.py): what it applies, how it is turned off, and that it
changes no result, which is why dvc.yaml leaves memory.py out of deps."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunelab.errors import UserError
from prunelab.memory import MALLOC_ENV, keep_freed_memory, malloc_choice
from tests.conftest import write_params

GLIBC = platform.libc_ver()[0] == "glibc"

# A few bf16 training steps of a small cnn at a batch whose activations (4 MB) glibc would serve
# from fresh pages by default; prints whether the settings applied and a digest of the weights.
TRAIN_STEPS = """
import hashlib, torch
from prunelab.memory import keep_freed_memory
from prunelab.models import build_model
applied = keep_freed_memory()
torch.manual_seed(0)
model = build_model("cnn", {"widths": [32, 64], "stem": 16})
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
for _ in range(3):
    with torch.autocast("cpu", torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values()))
print(applied, digest.hexdigest())
"""


def test_the_choice_comes_from_the_environment() -> None:
    assert malloc_choice({}) == "reuse" and malloc_choice({MALLOC_ENV: " system "}) == "system"
    with pytest.raises(UserError, match=f"{MALLOC_ENV}='mmap': give reuse or system"):
        malloc_choice({MALLOC_ENV: "mmap"})
    assert keep_freed_memory({MALLOC_ENV: "system"}) is False


def test_training_gives_the_same_weights_whichever_way_memory_is_served() -> None:
    runs = {
        choice: subprocess.run(
            [sys.executable, "-c", TRAIN_STEPS],
            env={**os.environ, MALLOC_ENV: choice},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for choice in ("reuse", "system")
    }
    assert runs["system"][0] == "False"
    assert runs["reuse"][0] == str(GLIBC)  # applied wherever the C library is glibc
    assert runs["reuse"][1] == runs["system"][1]


def test_a_bad_setting_stops_a_stage_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prunelab.commands import train

    monkeypatch.setenv(MALLOC_ENV, "jemalloc")
    result = CliRunner().invoke(train.app, ["--params", str(write_params(tmp_path / "params.yaml"))])
    assert result.exit_code == 2 and f"{MALLOC_ENV}='jemalloc': give reuse or system" in result.output
    assert "Traceback" not in result.output
