"""End to end: the real dvc.yaml in a temporary git repo, on generated data, with tiny params."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunelab.fetch import CHECKSUMS_ENV
from tests.conftest import ROOT, write_params

IDENTITY = {
    "GIT_AUTHOR_NAME": "prunelab tests",
    "GIT_AUTHOR_EMAIL": "tests@prunelab.invalid",
    "GIT_COMMITTER_NAME": "prunelab tests",
    "GIT_COMMITTER_EMAIL": "tests@prunelab.invalid",
}


def run(cwd: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def make_project(root: Path, archive: Path, checksums: Path) -> dict[str, str]:
    """Copy the pipeline into `root` as a fresh git + DVC repo; return the environment to run in."""
    for name in ("dvc.yaml", "stages", "src", ".gitignore", ".dvcignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, root / name)
    write_params(root / "params.yaml", {"data": {"source": str(archive), "val_size": 100}})
    env = {
        **os.environ,
        **IDENTITY,
        CHECKSUMS_ENV: str(checksums),
        # the `python` in dvc.yaml's commands must be this interpreter, with prunelab importable
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(root / "src"),
    }
    env.pop("PRUNELAB_CIFAR10_ARCHIVE", None)
    run(root, "git", "init", "-q", env=env)
    run(root, sys.executable, "-m", "dvc", "init", "-q", env=env)
    run(root, sys.executable, "-m", "dvc", "config", "core.analytics", "false", env=env)
    run(root, "git", "add", "-A", env=env)
    run(root, "git", "commit", "-qm", "init", env=env)
    return env


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, synthetic: tuple[Path, Path]
) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("project")
    env = make_project(root, *synthetic)
    run(root, sys.executable, "-m", "dvc", "repro", env=env)
    run(root, "git", "add", "-A", env=env)
    run(root, "git", "commit", "-qm", "first run", env=env)
    return root, env


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    return run(root, sys.executable, "-m", "dvc", *args, env=env)


def test_repro_produces_every_output(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    for path in ("models/baseline.pt", "models/pruned.pt", "dvc.lock", "plots/confusion/pruned.json"):
        assert (root / path).exists(), path
    evaluate = json.loads((root / "metrics/evaluate.json").read_text())
    assert set(evaluate) == {"baseline", "pruned"}
    prune = json.loads((root / "metrics/prune.json").read_text())
    conv1 = prune["layers"]["conv1"]
    assert conv1["zero_channels"] == round(0.4 * conv1["channels"])
    assert (root / "dvclive/train/plots/metrics/val/acc.tsv").read_text().count("\n") == 2  # header + 1 epoch
    assert "data/cifar-10-batches-py" not in run(root, "git", "ls-files", env=project[1])  # never in git


def test_prune_change_reruns_only_downstream_and_metrics_diff_shows_it(
    project: tuple[Path, dict[str, str]],
) -> None:
    root, env = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["prune"]["amount"] = 0.75
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(root, env, "repro")
    assert "Stage 'fetch' didn't change" in out and "Stage 'train' didn't change" in out
    assert "Running stage 'prune'" in out and "Running stage 'evaluate'" in out
    diff = json.loads(dvc(root, env, "metrics", "diff", "--json"))
    change = diff["metrics/prune.json"]["layers.conv1.zero_channels"]
    assert change["new"] > change["old"]
    assert "metrics/evaluate.json" in diff
    run(root, "git", "checkout", "--", "params.yaml", env=env)
    dvc(root, env, "checkout", "-q")


def test_exp_run_with_set_param(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    out = dvc(root, env, "exp", "run", "-S", "prune.amount=0.25", "-S", "prune.method=l1_unstructured")
    assert "Stage 'train' didn't change" in out or "train' is cached" in out
    rows = list(csv.DictReader(io.StringIO(dvc(root, env, "exp", "show", "--csv"))))
    assert "0.25" in [row["prune.amount"] for row in rows]
    assert json.loads((root / "metrics/prune.json").read_text())["method"] == "l1_unstructured"
