from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunelab.cli import app as prunelab_app
from prunelab.commands import evaluate, fetch, prune, train
from tests.conftest import ROOT, write_params


@pytest.mark.parametrize("module", [fetch, train, prune, evaluate])
def test_every_stage_has_help(module) -> None:
    result = CliRunner().invoke(module.app, ["--help"])
    assert result.exit_code == 0 and "--params" in result.output


def test_installed_command_lists_the_stages() -> None:
    result = CliRunner().invoke(prunelab_app, ["--help"])
    assert result.exit_code == 0
    for name in ("fetch", "train", "prune", "evaluate"):
        assert name in result.output


def test_stage_script_bad_param_is_one_line_exit_2(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"prune": {"amount": 7.5}})
    done = subprocess.run(
        [sys.executable, str(ROOT / "stages/prune.py"), "--params", str(params)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "prune.amount = 7.5" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "models").exists()


def test_stages_run_through_the_installed_command(data_dir: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml")
    runner = CliRunner()
    common = ["--params", str(params)]
    result = runner.invoke(
        prunelab_app,
        [
            "train",
            *common,
            "--data",
            str(data_dir),
            "--out",
            str(tmp_path / "b.pt"),
            "--metrics",
            str(tmp_path / "t.json"),
            "--live",
            str(tmp_path / "live"),
            "--resume",
            str(tmp_path / "r.pt"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        prunelab_app,
        [
            "prune",
            *common,
            "--model",
            str(tmp_path / "b.pt"),
            "--out",
            str(tmp_path / "p.pt"),
            "--metrics",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        prunelab_app,
        [
            "evaluate",
            *common,
            "--data",
            str(data_dir),
            "--model",
            f"pruned={tmp_path / 'p.pt'}",
            "--metrics",
            str(tmp_path / "e.json"),
            "--plots",
            str(tmp_path / "plots"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plots/pruned.json").exists()
