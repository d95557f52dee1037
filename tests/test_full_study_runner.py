"""experiments/full_study.py resumes an interrupted experiment instead of starting over.

The full study runs for hours on a CPU, longer than a session may last. Its runner therefore
runs each experiment in a clone of the last commit that shares the project's DVC cache, and a
second `run` resumes in that clone. Here a tiny two-stage pipeline stands in for the
comparison: its second stage fails on the first attempt, and the second attempt must not rerun
the first stage.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

STAGES = """\
stages:
  first:
    cmd: python first.py
    deps: [first.py]
    params: [x]
    outs:
      - models/first.bin
      - metrics/sweep/a-2x.json:
          cache: false
  second:
    cmd: python second.py
    deps: [second.py, metrics/sweep/a-2x.json]
    outs:
      - metrics/sweep/b-2x.json:
          cache: false
"""


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True).stdout


def project(root: Path, counts: Path, sentinel: Path) -> None:
    """A committed DVC project: `first` counts its runs in `counts` and writes a cached model and
    a git-tracked metric, as the sweep does; `second` fails while `sentinel` exists."""
    root.mkdir()
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.name", "t")
    sh(root, "git", "config", "user.email", "t@t")
    sh(root, sys.executable, "-m", "dvc", "init", "-q")
    (root / "params.yaml").write_text("x: 1\nsweep: {methods: [a, b], points: [2x]}\n")
    (root / "metrics/sweep").mkdir(parents=True)
    (root / "metrics/sweep/a-3x.json").write_text("{}")  # a point the experiment's params do not name
    (root / "dvc.yaml").write_text(STAGES)
    (root / "first.py").write_text(
        "import os, yaml\n"
        f"open({str(counts)!r}, 'a').write('run\\n')\n"
        "x = yaml.safe_load(open('params.yaml'))['x']\n"
        "os.makedirs('models', exist_ok=True); os.makedirs('metrics/sweep', exist_ok=True)\n"
        "open('models/first.bin', 'w').write(f'model {x}')\n"
        "open('metrics/sweep/a-2x.json', 'w').write(f'{{\"x\": {x}}}')\n"
    )
    (root / "second.py").write_text(
        "import os, sys\n"
        f"if os.path.exists({str(sentinel)!r}): sys.exit('interrupted')\n"
        "open('metrics/sweep/b-2x.json', 'w').write('{\"done\": 1}')\n"
    )
    sh(root, sys.executable, "-m", "dvc", "repro", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "repro")


def test_an_interrupted_experiment_resumes_in_its_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts, sentinel, root = tmp_path / "first-runs", tmp_path / "interrupt", tmp_path / "project"
    project(root, counts, sentinel)
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    for name in ("common", "full_study"):  # benchmarks/ has a `common` too: import experiments' own
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    import common
    import full_study

    monkeypatch.setattr(common, "ROOT", root)
    monkeypatch.setattr(full_study, "ROOT", root)
    monkeypatch.setattr(full_study, "FOLDER", root / "docs/results/full-study")
    monkeypatch.setattr(full_study, "CLONES", root / ".prunelab/full-study")
    monkeypatch.setattr(
        full_study, "command", lambda arch: ["dvc", "exp", "run", "-n", f"full-{arch}", "-S", "x=2"]
    )
    cached = len(list((root / ".dvc/cache").rglob("*")))

    (root / ".prunelab/full-study").mkdir(parents=True)
    with (root / ".prunelab/full-study/.cnn.lock").open("w") as held:  # as a running `run` holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SystemExit, match="is running its experiment in"):
            full_study.run(["cnn"])
    assert counts.read_text().count("run") == 1 and not (root / ".prunelab/full-study/cnn").exists()

    sentinel.touch()
    with pytest.raises(SystemExit, match="run the same command again"):
        full_study.run(["cnn"])
    clone = root / ".prunelab/full-study/cnn"
    assert counts.read_text().count("run") == 2  # the commit's repro, then the first attempt
    assert json.loads((clone / "metrics/sweep/a-2x.json").read_text()) == {"x": 2}
    assert sh(clone, "git", "rev-parse", "HEAD") == sh(root, "git", "rev-parse", "HEAD")

    sentinel.unlink()
    full_study.run(["cnn"])
    assert counts.read_text().count("run") == 2  # resumed: the finished stage did not run again
    copied = root / "docs/results/full-study/cnn"
    assert json.loads((copied / "metrics/sweep/a-2x.json").read_text()) == {"x": 2}
    assert json.loads((copied / "metrics/sweep/b-2x.json").read_text()) == {"done": 1}
    assert not (copied / "metrics/sweep/a-3x.json").exists()  # only the points its params name
    assert yaml.safe_load((copied / "params.yaml").read_text())["x"] == 2
    record = json.loads((root / "docs/results/full-study/study.json").read_text())
    assert record["attempts"] == {"cnn": 2} and record["archs"] == ["cnn"]
    assert "full-cnn" in sh(root, "git", "for-each-ref", "refs/exps")  # the experiment, here
    assert len(list((root / ".dvc/cache").rglob("*"))) > cached  # its model, in the shared cache
    assert not clone.exists()
