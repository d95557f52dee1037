"""The daily loop's cost: the stages `dvc exp run -S prune.amount=0.6` reruns (prune, finetune,
compact, evaluate), each timed as a whole process, with the fine-tuning epochs counted apart;
then the same experiment through `dvc exp run` itself, in a clone, so that DVC's own work
counts too; then a no-op `dvc repro`, when the workspace is up to date.

Run from the repository root after `dvc repro` (it reads data/, models/baseline.pt and
metrics/baseline.json); the stages write to a temporary folder and the experiment runs in a
clone of HEAD, so the workspace stays as it is. The clone pulls what it needs from this
workspace's DVC cache into its own, without the run-cache, so every stage really runs:

    uv run python benchmarks/daily_loop.py [--amount 0.6] [--no-exp-run] [--no-noop]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from prunelab.device import cpu_description, cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
DATA = "data/cifar-10-batches-py"


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


def exp_run_seconds(amount: float) -> tuple[float, list[str], float]:
    """Wall seconds of `dvc exp run -S prune.amount=AMOUNT` in a clone of HEAD, the stages it
    ran, and the fine-tuning epochs' seconds (metrics/finetune.json). The clone pulls from this
    workspace's cache as a remote, so it has no run-cache to restore a stage from."""
    identity = {
        f"GIT_{who}_{what}": value
        for who in ("AUTHOR", "COMMITTER")
        for what, value in (("NAME", "prunelab benchmark"), ("EMAIL", "benchmark@prunelab.invalid"))
    }
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        env = clone_env(clone, {**os.environ, **identity})
        dvc = [sys.executable, "-m", "dvc"]
        for cmd, cwd in (
            (["git", "clone", "-q", str(ROOT), str(clone)], ROOT),
            ([*dvc, "remote", "add", "--local", "workspace", str(ROOT / ".dvc/cache")], clone),
            ([*dvc, "pull", "-q", "-r", "workspace"], clone),
        ):
            done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
        start = time.perf_counter()
        cmd = [*dvc, "exp", "run", "-S", f"prune.amount={amount}"]
        done = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stdout[-2000:]}")
        ran = [stage for line in done.stdout.splitlines() if (stage := started_stage(line))]
        tuning = json.loads((clone / "metrics/finetune.json").read_text())["seconds"]
    return wall, ran, tuning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amount", type=float, default=0.6, help="prune.amount of the experiment")
    parser.add_argument(
        "--exp-run", action=argparse.BooleanOptionalAction, default=True, help="time `dvc exp run` too"
    )
    parser.add_argument(
        "--noop", action=argparse.BooleanOptionalAction, default=True, help="time a no-op repro"
    )
    args = parser.parse_args()
    for needed in (DATA, "models/baseline.pt", "metrics/baseline.json"):
        if not (ROOT / needed).exists():
            raise SystemExit(f"{needed} is missing: run `dvc repro` first")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["prune"]["amount"] = args.amount
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        py, p = sys.executable, f"--params {tmp}/params.yaml"
        commands = {
            "python -c 'import torch'": "-c 'import torch, torchvision'",
            "prune": f"stages/prune.py {p} --out {tmp}/pruned.pt --metrics {tmp}/prune.json",
            "finetune": f"stages/finetune.py {p} --model {tmp}/pruned.pt --out {tmp}/ft.pt "
            f"--metrics {tmp}/finetune.json --live {tmp}/live",
            "compact": f"stages/compact.py {p} --model {tmp}/ft.pt --out {tmp}/compact.pt "
            f"--onnx {tmp}/compact.onnx --metrics {tmp}/compact.json",
            "evaluate": f"stages/evaluate.py {p} --model baseline=models/baseline.pt "
            f"--model pruned={tmp}/pruned.pt --model finetuned={tmp}/ft.pt --model compact={tmp}/compact.pt "
            f"--scores metrics/baseline.json --metrics {tmp}/evaluate.json --plots {tmp}/confusion",
        }
        stages = {name: [py, *shlex.split(cmd)] for name, cmd in commands.items()}
        seconds = {name: timed(cmd) for name, cmd in stages.items()}
        epochs = json.loads((work / "finetune.json").read_text())["seconds"]
        scored = {
            k: v["scored"]
            for k, v in json.loads((work / "evaluate.json").read_text()).items()
            if "scored" in v
        }
    print(
        f"CPU: {cpu_description()}; bf16 autocast: {cpu_has_bf16()}; torch threads {torch.get_num_threads()}"
    )
    print(f"prune.amount={args.amount}, params.yaml otherwise; each stage a whole process, as DVC runs it")
    print(f"{'stage':<28}{'seconds':>9}")
    for name, s in seconds.items():
        note = f"  (of which fine-tuning epochs {epochs:.1f} s)" if name == "finetune" else ""
        print(f"{name:<28}{s:>9.1f}{note}")
    loop = sum(s for name, s in seconds.items() if not name.startswith("python")) - epochs
    print(f"{'all but the epochs':<28}{loop:>9.1f}  (target ≤ 30 s)")
    print(f"evaluate scored: {scored}")
    if args.exp_run:
        wall, ran, tuning = exp_run_seconds(args.amount)
        print(
            f"`dvc exp run -S prune.amount={args.amount}` in a clone: {wall:.1f} s, stages run: "
            f"{', '.join(ran)}; all but the fine-tuning epochs {wall - tuning:.1f} s (target ≤ 30 s), "
            f"of which DVC's own work about {wall - tuning - loop:.1f} s"
        )
    if args.noop:
        status = subprocess.run(
            [py, "-m", "dvc", "status", "--json"], cwd=ROOT, capture_output=True, text=True
        )
        if status.returncode != 0 or json.loads(status.stdout or "{}"):
            print("no-op repro: skipped, the workspace is not up to date (`dvc status`)")
        else:
            runs = [timed([py, "-m", "dvc", "repro"]) for _ in range(3)]
            print(f"no-op `dvc repro`: {', '.join(f'{r:.2f}' for r in runs)} s (target ≤ 2 s)")
            with tempfile.TemporaryDirectory() as empty:  # as where Python may not write .pyc files
                nopyc = {"PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
                runs = [timed([py, "-m", "dvc", "repro"], nopyc) for _ in range(2)]
                torch_s = timed([py, "-c", "import torch, torchvision"], nopyc)
            print(
                f"  ... without compiled bytecode: {', '.join(f'{r:.2f}' for r in runs)} s; import torch {torch_s:.1f} s"
            )
    print(
        "reproduce: uv run python benchmarks/daily_loop.py"
        + (f" --amount {args.amount}" if args.amount != 0.6 else "")
    )


if __name__ == "__main__":
    main()
