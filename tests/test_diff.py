"""`prunelab diff` on generated metrics: which differences exceed their noise, and which come
from another kind of machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from prunelab.cli import app
from prunelab.per_image import encode
from tests.conftest import PROVENANCE

CLASSES = ["cat", "dog"]


def correct_rows(correct: np.ndarray) -> list[dict[str, str]]:
    return [{"actual": "cat", "predicted": "cat" if c else "dog"} for c in correct]


def write_tree(
    root: Path, pruned: np.ndarray, baseline: np.ndarray, point: np.ndarray, **made: object
) -> Path:
    (root / "metrics/sweep").mkdir(parents=True)
    (root / "plots/confusion").mkdir(parents=True)
    provenance = {**PROVENANCE, **made}
    evaluate = {
        name: {"acc": float(c.mean()), "params": 1000 if name == "baseline" else int(900 + c.sum() % 7)}
        for name, c in (("baseline", baseline), ("pruned", pruned))
    }
    (root / "metrics/evaluate.json").write_text(json.dumps({**evaluate, "provenance": provenance}))
    for name, c in (("baseline", baseline), ("pruned", pruned)):
        (root / f"plots/confusion/{name}.json").write_text(json.dumps(correct_rows(c)))
    (root / "metrics/train.json").write_text(json.dumps({"val_acc": 0.9, "provenance": provenance}))
    result = {
        "val_acc": float(point.mean()),
        "val_acc_std": 0.0,
        "val_acc_by_seed": {"0": float(point.mean())},
    }
    (root / "metrics/sweep/l1-2x.json").write_text(
        json.dumps({"val_images": len(point), "recovery": {"none": result}, "random_floor": {}})
    )
    (root / "metrics/sweep/l1-2x.correct.json").write_text(
        json.dumps({"images": len(point), "recovery": {"none": {"0": encode(point)}}, "random_floor": {}})
    )
    return root


def diff(*args: str) -> dict:
    result = CliRunner().invoke(app, ["diff", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_diff_names_what_is_beyond_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    baseline, pruned, point = rng.random(10_000) < 0.9, rng.random(10_000) < 0.8, rng.random(2500) < 0.7
    old = write_tree(tmp_path / "old", pruned, baseline, point)
    # pruned: 3 points better on the same images (beyond noise); baseline: 4 images flipped
    # (within noise); the sweep point: 5 images flipped, paired (within noise)
    better = pruned | (rng.random(10_000) < 0.15)
    flipped = baseline.copy()
    flipped[:4] = ~flipped[:4]
    moved = point.copy()
    moved[:5] = ~moved[:5]
    new = write_tree(tmp_path / "new", better, flipped, moved)
    rows = {r["metric"]: r for r in diff(str(old), str(new))["rows"]}
    assert rows["evaluate.pruned.acc"]["outcome"] == "beyond noise"
    assert rows["evaluate.baseline.acc"]["outcome"] == "within noise"
    assert rows["sweep l1-2x none"]["outcome"] == "within noise"
    assert rows["evaluate.pruned.params"]["outcome"] == "changed (exact count)"
    assert not any(r.startswith("provenance") for r in rows)
    text = CliRunner().invoke(app, ["diff", str(old), str(new)]).output
    assert text.index("evaluate.pruned.acc") < text.index("evaluate.baseline.acc")  # beyond noise first
    assert "Holm" in text and "another kind of machine" not in text


def test_diff_marks_another_kind_of_machine(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    baseline, pruned, point = rng.random(10_000) < 0.9, rng.random(10_000) < 0.8, rng.random(2500) < 0.7
    old = write_tree(tmp_path / "old", pruned, baseline, point)
    new = write_tree(
        tmp_path / "new", pruned, baseline, point, cpu_flags="avx2 avx512f avx512_bf16", precision="bfloat16"
    )
    found = diff(str(old), str(new))
    assert found["machine_or_recipe_differs"] == ["cpu_flags", "precision"]
    text = CliRunner().invoke(app, ["diff", str(old), str(new)]).output
    assert "Made on another kind of machine or recipe" in text


def test_diff_reads_commits_and_experiments(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    baseline, point = rng.random(10_000) < 0.9, rng.random(2500) < 0.7
    repo = tmp_path / "repo"
    write_tree(repo, rng.random(10_000) < 0.5, baseline, point)

    def git(*args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        return subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env
        ).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "one")
    (repo / "plots/confusion/pruned.json").write_text(json.dumps(correct_rows(baseline)))
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    evaluate["pruned"]["acc"] = float(baseline.mean())
    (repo / "metrics/evaluate.json").write_text(json.dumps(evaluate))
    git("commit", "-qam", "two")
    # a `dvc exp run` experiment is a commit under refs/exps, found by its name
    git("update-ref", "refs/exps/ab/cdef/pruned-better", "HEAD")
    git("reset", "-q", "--hard", "HEAD~1")
    for new in ("HEAD@{1}", "pruned-better"):
        rows = {r["metric"]: r for r in diff("HEAD", new, "--repo", str(repo))["rows"]}
        assert rows["evaluate.pruned.acc"]["outcome"] == "beyond noise", new
    result = CliRunner().invoke(app, ["diff", "HEAD", "no-such-thing", "--repo", str(repo)])
    assert result.exit_code == 2 and "'no-such-thing': neither a folder" in result.output
