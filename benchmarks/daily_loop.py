"""The daily loop's cost: the stages `dvc exp run -S prune.amount=0.6` reruns (prune, finetune,
compact, evaluate), each timed as a whole process, with the fine-tuning epochs counted apart;
then the same experiment through `dvc exp run` itself, in a clone, each stage timed from DVC's
output inside that run, so that DVC's own work (the rest of its wall time) is measured, not
estimated; then a no-op `dvc repro`, when the workspace is up to date. `--without-comparison`
runs the experiment once more in a clone without the comparison's 28 stages: the difference in
DVC's own work is what those stages cost it.

Run from the repository root after `dvc repro` (it reads data/, models/baseline.pt and
metrics/baseline.json); the stages write to a temporary folder and the experiment runs in a
clone of HEAD, so the workspace stays as it is. The clone pulls what it needs from this
workspace's DVC cache into its own, without the run-cache, so every stage really runs:

    uv run python benchmarks/daily_loop.py [--amount 0.6] [--no-exp-run] [--without-comparison]
                                           [--no-noop]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import DATA, ROOT, clone_env, dvc_stage_seconds, timed, timed_output, write_params

from prunelab.device import cpu_description, cpu_has_bf16


def exp_run_seconds(amount: float, without_comparison: bool = False) -> tuple[float, dict[str, float], float]:
    """Wall seconds of `dvc exp run -S prune.amount=AMOUNT` in a clone of HEAD, the seconds of
    each stage it ran (dvc_stage_seconds), and the fine-tuning epochs' seconds
    (metrics/finetune.json). The clone pulls from this workspace's cache as a remote, so it has
    no run-cache to restore a stage from. `without_comparison`: the clone first commits the
    comparison's points away (comparison/dvc.yaml and its lock), to tell the cost of their 28
    stages to DVC from DVC's cost for any pipeline."""
    identity = {
        f"GIT_{who}_{what}": value
        for who in ("AUTHOR", "COMMITTER")
        for what, value in (("NAME", "prunelab benchmark"), ("EMAIL", "benchmark@prunelab.invalid"))
    }
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        env = clone_env(clone, {**os.environ, **identity})
        dvc = [sys.executable, "-m", "dvc"]
        setup = [
            (["git", "clone", "-q", str(ROOT), str(clone)], ROOT),
            ([*dvc, "remote", "add", "--local", "workspace", str(ROOT / ".dvc/cache")], clone),
            ([*dvc, "pull", "-q", "-r", "workspace"], clone),
        ]
        if without_comparison:
            setup += [
                (["git", "rm", "-q", "comparison/dvc.yaml", "comparison/dvc.lock"], clone),
                (["git", "commit", "-q", "-m", "without the comparison's stages"], clone),
            ]
        for cmd, cwd in setup:
            done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
        start, lines, end = timed_output([*dvc, "exp", "run", "-S", f"prune.amount={amount}"], clone, env)
        tuning = json.loads((clone / "metrics/finetune.json").read_text())["seconds"]
    return end - start, dvc_stage_seconds(lines), tuning


def print_exp_run(amount: float, without_comparison: bool) -> None:
    wall, stages, tuning = exp_run_seconds(amount, without_comparison)
    spent = sum(stages.values())
    where = "a clone without the comparison's stages" if without_comparison else "a clone"
    print(
        f"`dvc exp run -S prune.amount={amount}` in {where}: {wall:.1f} s; all but the fine-tuning "
        f"epochs ({tuning:.1f} s) {wall - tuning:.1f} s (target ≤ 30 s)"
    )
    print(
        "  stages, each from DVC starting it to DVC writing its lock: "
        + ", ".join(f"{name} {s:.1f}" for name, s in stages.items())
    )
    print(f"  those but the epochs {spent - tuning:.1f} s; DVC's own work (the rest) {wall - spent:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amount", type=float, default=0.6, help="prune.amount of the experiment")
    parser.add_argument(
        "--exp-run", action=argparse.BooleanOptionalAction, default=True, help="time `dvc exp run` too"
    )
    parser.add_argument(
        "--without-comparison",
        action="store_true",
        help="also time `dvc exp run` in a clone without the comparison's 28 stages (DVC's cost of them)",
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
        write_params(work / "params.yaml", {"prune.amount": args.amount})
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
        print_exp_run(args.amount, without_comparison=False)
    if args.without_comparison:
        print_exp_run(args.amount, without_comparison=True)
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
        + (" --without-comparison" if args.without_comparison else "")
    )


if __name__ == "__main__":
    main()
