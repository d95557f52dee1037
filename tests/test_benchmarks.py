"""The benchmarks' parsing of DVC's output, which the quoted figures of the daily loop and the
comparison rest on (the benchmarks themselves run for minutes, so they are not run here)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import dvc_stage_seconds, started_stage


def test_a_stage_name_keeps_a_plugins_import_path_and_loses_its_dvc_yaml() -> None:
    assert started_stage("Running stage 'prune':\n") == "prune"
    assert started_stage("Running stage 'comparison/dvc.yaml:sweep@group_l2-2x':\n") == "sweep@group_l2-2x"
    assert started_stage("Running stage 'sweep@my_pkg.methods:Mine-2x':\n") == "sweep@my_pkg.methods:Mine-2x"
    assert started_stage("Stage 'train' didn't change, skipping\n") is None


def test_a_stage_counts_from_its_start_to_its_lock_and_the_rest_is_dvcs() -> None:
    lines = [
        (0.0, "Stage 'train' didn't change, skipping\n"),
        (1.0, "Running stage 'prune':\n"),
        (1.1, "> python stages/prune.py --params params.yaml\n"),
        (2.5, "✓ pruned\n"),
        (3.0, "Updating lock file 'dvc.lock'\n"),
        (4.0, "Running stage 'comparison/dvc.yaml:sweep@l1_unstructured-2x':\n"),
        (9.5, "Updating lock file 'comparison/dvc.lock'\n"),
        (10.0, "Running stage 'report':\n"),  # failed: no lock written, so not counted
    ]
    assert dvc_stage_seconds(lines) == {"prune": 2.0, "sweep@l1_unstructured-2x": 5.5}
