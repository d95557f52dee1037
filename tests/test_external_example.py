"""The example external project (examples/external) runs end to end on generated data."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import yaml

from prunelab.fetch import ARCHIVE_ENV, CHECKSUMS_ENV
from tests.conftest import ROOT
from tests.test_pipeline import IDENTITY, run


def test_external_project_prunes_its_own_model(tmp_path: Path, synthetic: tuple[Path, Path]) -> None:
    archive, checksums = synthetic
    project = tmp_path / "my-project"
    shutil.copytree(ROOT / "examples/external", project)
    env = {
        **os.environ,
        **IDENTITY,
        ARCHIVE_ENV: str(archive),
        CHECKSUMS_ENV: str(checksums),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["val_size"] = 100  # the generated data set has 600 training images
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env.pop("PYTHONPATH", None)  # prunelab comes from the installed package, as for a user
    run(project, "git", "init", "-q", env=env)
    run(project, sys.executable, "-m", "dvc", "init", "-q", env=env)
    run(project, sys.executable, "-m", "dvc", "config", "core.analytics", "false", env=env)
    run(project, "git", "add", "-A", env=env)
    run(project, "git", "commit", "-qm", "init", env=env)
    run(project, sys.executable, "-m", "dvc", "repro", env=env)
    evaluate = json.loads((project / "metrics/evaluate.json").read_text())
    assert evaluate["pruned"]["params_nonzero"] < evaluate["baseline"]["params_nonzero"]
    prune = json.loads((project / "metrics/prune.json").read_text())
    assert prune["targeted_sparsity"] == 0.5 and prune["layers"]["9"]["zeros"] == 0  # classifier kept whole
