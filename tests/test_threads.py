"""CPU threads per stage process: an equal share of the cores among running stages, or
PRUNELAB_THREADS; recorded in metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from prunelab import threads as threads_module
from prunelab.errors import UserError
from prunelab.threads import THREADS_ENV, cpu_cores, cpu_share, rebalance, running_stages, threads_for
from tests.conftest import write_params

HOLDER = """
import sys, time
from pathlib import Path
from prunelab.threads import cpu_share
with cpu_share(env={}, lock_dir=Path(sys.argv[1])) as threads:
    print(threads, flush=True)
    time.sleep(120)
"""


def hold_in_subprocess(lock_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip().isdigit()  # registered
    return proc


def test_threads_are_an_equal_share_of_the_cores_or_pinned() -> None:
    assert threads_for(8, 1, {}) == 8 and threads_for(8, 2, {}) == 4 and threads_for(8, 3, {}) == 2
    assert threads_for(2, 4, {}) == 1  # never fewer than one
    assert threads_for(8, 4, {THREADS_ENV: "3"}) == 3
    for bad in ("0", "two", "-1", "1.5"):
        with pytest.raises(UserError, match=f"{THREADS_ENV}='{bad}': give a whole number of threads"):
            threads_for(8, 1, {THREADS_ENV: bad})


def test_running_stages_share_the_cores_and_a_killed_one_stops_counting(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    holders = [hold_in_subprocess(tmp_path), hold_in_subprocess(tmp_path)]
    try:
        with cpu_share(env={}, lock_dir=tmp_path) as threads:
            assert running_stages(tmp_path) == 3
            assert threads == torch.get_num_threads() == max(1, cpu_cores() // 3)
        assert running_stages(tmp_path) == 2  # this one's registration ended with the block
        holders[0].send_signal(signal.SIGKILL)
        holders[0].wait()
        assert running_stages(tmp_path) == 1  # the kernel dropped its lock; its file is removed
        assert len(list(tmp_path.glob("cpu-*.lock"))) == 1
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
        torch.set_num_threads(before)


def test_a_share_follows_stages_that_start_and_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_module, "cpu_cores", lambda: 4)
    monkeypatch.setattr(threads_module, "RECHECK_SECONDS", 3600.0)
    before = torch.get_num_threads()
    try:
        with cpu_share(env={}, lock_dir=tmp_path) as alone:
            assert alone == torch.get_num_threads() == 4
            holder = hold_in_subprocess(tmp_path)
            rebalance()  # counted less than RECHECK_SECONDS ago: no new count yet
            assert torch.get_num_threads() == 4
            monkeypatch.setattr(threads_module, "RECHECK_SECONDS", 0.0)
            rebalance()
            assert torch.get_num_threads() == 2  # another stage started: half the cores
            holder.kill()
            holder.wait()
            rebalance()
            assert torch.get_num_threads() == 4  # it ended: the cores come back
        torch.set_num_threads(3)
        rebalance()  # outside a share it changes nothing
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_stage_records_the_threads_it_ran_with(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prunelab.commands import train

    before = torch.get_num_threads()
    monkeypatch.setenv(THREADS_ENV, "1")
    monkeypatch.setenv("PRUNELAB_LOCK_DIR", str(tmp_path / "locks"))
    params = write_params(tmp_path / "params.yaml")
    looks = []
    monkeypatch.setattr("prunelab.train.rebalance", lambda: looks.append(1))
    try:
        result = CliRunner().invoke(
            train.app,
            [
                "--params",
                str(params),
                "--data",
                str(data_dir),
                "--out",
                str(tmp_path / "b.pt"),
                "--metrics",
                str(tmp_path / "t.json"),
                "--live",
                str(tmp_path / "live"),
            ],
        )
        assert result.exit_code == 0, result.output
        recorded = json.loads((tmp_path / "t.json").read_text())
        assert recorded["provenance"]["threads"] == 1
        steps = recorded["train_images"] // 64 * recorded["epochs"]  # write_params: batch_size 64
        assert len(looks) >= steps > 0  # the training loop looks again at every step
        assert not list((tmp_path / "locks").glob("cpu-*.lock"))  # registration ended with it
        monkeypatch.setenv(THREADS_ENV, "many")
        result = CliRunner().invoke(train.app, ["--params", str(params)])
        assert result.exit_code == 2 and f"{THREADS_ENV}='many'" in result.output
    finally:
        torch.set_num_threads(before)
