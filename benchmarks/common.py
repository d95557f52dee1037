"""What the timing scripts share: the repository, the AVX2 cap, params.yaml with changes,
commands timed whole or stage by stage from DVC's output, and a clone's environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = "data/cifar-10-batches-py"
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
"""oneDNN and MKL capped at AVX2: a bf16 CPU timed as an AVX2-only one would run."""


def environment(avx2: bool = False) -> dict[str, str]:
    """os.environ, with the AVX2 cap set where `avx2`, and left out otherwise."""
    return {k: v for k, v in os.environ.items() if k not in AVX2} | (AVX2 if avx2 else {})


def params_with(changes: dict[str, Any], source: Path = ROOT / "params.yaml") -> dict[str, Any]:
    """`source` (the workspace's params.yaml) with dotted keys set: {"train.precision": "fp32"}."""
    params = yaml.safe_load(source.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        if leaf not in node:
            raise SystemExit(f"{source}: no param {dotted}")
        node[leaf] = value
    return params


def write_params(path: Path, changes: dict[str, Any], source: Path = ROOT / "params.yaml") -> Path:
    path.write_text(yaml.safe_dump(params_with(changes, source), sort_keys=False))
    return path


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def clone_env(clone: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` for DVC in `clone`: dvc.yaml's `python` is this interpreter, importing the clone's code."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "PATH": path, "PYTHONPATH": str(clone / "src")}


def started_stage(line: str) -> str | None:
    """The stage a line of `dvc repro` output starts, without its dvc.yaml's path
    (`comparison/dvc.yaml:sweep@…` → `sweep@…`); None for any other line."""
    if not line.startswith("Running stage '"):
        return None
    name = line.split("'")[1]
    _, in_file, stage = name.partition("dvc.yaml:")  # a plugin's import path has a colon too
    return stage if in_file else name


def timed_output(
    cmd: list[str], cwd: Path, env: dict[str, str], echo_stages: bool = False
) -> tuple[float, list[tuple[float, str]], float]:
    """Run a DVC command; its start, its output lines each with the second it was read, and its
    end (time.perf_counter). `echo_stages` prints each stage's name as it starts (for long runs).
    On a failure, the end of DVC's output says why."""
    start = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter(), line))
            if echo_stages and (stage := started_stage(line)):
                print(f"  {stage}", flush=True)
    end = time.perf_counter()
    if proc.returncode != 0:
        tail = "".join(line for _, line in lines[-40:])
        raise SystemExit(f"{tail}\n{' '.join(cmd)} failed (exit {proc.returncode}) in {cwd}")
    return start, lines, end


def dvc_stage_seconds(lines: list[tuple[float, str]]) -> dict[str, float]:
    """From DVC's output lines, each with the second it was read: for each stage that ran, the
    seconds from its 'Running stage' line to the 'Updating lock file' line after it, that is its
    process and DVC saving its outputs. Everything else in the run's wall time is DVC's own work:
    reading the pipeline, checking every other stage, writing the lock, committing the experiment."""
    seconds: dict[str, float] = {}
    current, started = None, 0.0
    for at, line in lines:
        if stage := started_stage(line):
            current, started = stage, at
        elif current and line.startswith("Updating lock file"):
            seconds[current] = at - started
            current = None
    return seconds
