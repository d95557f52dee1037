"""What `dvc repro` costs, stage by stage, as DVC runs it: the comparison (every sweep point and
the report) by default, or the whole pipeline from a fresh clone (`--whole`). Then where one sweep
point's seconds go, under cProfile (`--profile`), and what DVC itself adds to each stage.

It works on a clone of the repository's HEAD in a temporary folder, so the workspace stays as it
is. For the comparison the clone shares this workspace's DVC cache (the data and the baseline
are checked out, not fetched or trained), its sweep outputs are deleted, and `dvc repro` reruns
the points and the report; the accuracies must come out as committed (latencies are measured
afresh). `--whole` is what a user's first `dvc repro` does: the clone has its own cache and
fetches from PRUNELAB_CIFAR10_ARCHIVE (or data.source); where training gives the committed
baseline byte for byte, DVC keeps every committed score and reruns only what rebuilds the missing
checkpoints. `--avx2` caps oneDNN and MKL at AVX2 and sets train.precision fp32 in the clone, so
every stage reruns: an emulation of a CPU without bf16, not one.

    uv run python benchmarks/repro_speed.py [--whole] [--avx2] [--profile ln_structured:2x] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, clone_env, environment, started_stage, timed_output, write_params

from prunelab.device import cpu_description, cpu_has_bf16

PHASES = {
    "scoring (split_correct)": "predict.py:split_correct",
    "BatchNorm recalibration": "recovery.py:recalibrate_batchnorm",
    "latency, dense against compacted": "sweep.py:measured_speedups",
    "amount search (cost target)": "sweep.py:point_amount",
    "compacting for scoring": "compact.py:compacted_copy",
    "loading the data": "data.py:train_and_validation",
}


def stage_seconds(clone: Path, env: dict[str, str]) -> dict[str, float]:
    """`dvc repro` in `clone`, each stage's name printed as it starts; seconds from each 'Running
    stage' line to the next one (or to the end), so each stage's time includes what DVC does after
    its command. On a failure, the end of DVC's output says why."""
    _, lines, end = timed_output([sys.executable, "-m", "dvc", "repro"], clone, env, echo_stages=True)
    starts = [(at, stage) for at, line in lines if (stage := started_stage(line))]
    ends = [at for at, _ in starts[1:]] + [end]
    return {stage: until - at for (at, stage), until in zip(starts, ends, strict=True)}


def accuracies(folder: Path) -> dict[str, object]:
    """Every sweep point's scores (latencies left out: they are measured afresh)."""
    return {
        path.name: {
            k: v for k, v in json.loads(path.read_text()).items() if k in ("recovery", "random_floor")
        }
        for path in sorted(folder.glob("*.json"))
    }


def profile_point(
    clone: Path, method: str, point: str, through_dvc: float | None, env: dict[str, str]
) -> None:
    """One sweep point run directly in `clone`, then under cProfile, split into its phases."""
    cmd = ["stages/sweep.py", "--method", method, "--point", point]
    with tempfile.TemporaryDirectory() as tmp:
        out = ["--out", f"{tmp}/point.json"]
        start = time.perf_counter()
        _run_point([sys.executable, *cmd, *out], clone, env)
        direct = time.perf_counter() - start
        stats = Path(tmp) / "point.prof"
        _run_point([sys.executable, "-m", "cProfile", "-o", str(stats), *cmd, *out], clone, env)
        table = pstats.Stats(str(stats)).stats  # type: ignore[attr-defined]
    cumulative = {f"{Path(file).name}:{name}": ct for (file, _, name), (_, _, _, ct, _) in table.items()}
    total = max(cumulative.values())
    print(f"\n{method} @ {point}: its stage process run directly {direct:.2f} s", end="")
    if through_dvc is not None:
        print(
            f", through dvc repro {through_dvc:.2f} s (DVC's own share {through_dvc - direct:.2f} s)", end=""
        )
    print(f"; under cProfile {total:.2f} s, of which")
    shown = 0.0
    for label, key in PHASES.items():
        seconds = cumulative.get(key, 0.0)
        shown += seconds
        print(f"  {label:<36}{seconds:6.2f} s")
    print(f"  {'the rest (Python, imports, pruning)':<36}{total - shown:6.2f} s")


def _run_point(cmd: list[str], clone: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        cmd, cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{done.stderr.strip()}\n--profile: the sweep point failed (exit {done.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--whole", action="store_true", help="the whole pipeline from a fresh clone")
    parser.add_argument(
        "--avx2", action="store_true", help="oneDNN and MKL capped at AVX2, train.precision fp32"
    )
    parser.add_argument("--profile", default="ln_structured:2x", help="METHOD:POINT to profile, or none")
    parser.add_argument("--keep", type=Path, help="clone here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if args.profile != "none" and args.profile.count(":") != 1:
        parser.error(f"--profile {args.profile!r}: write METHOD:POINT, as ln_structured:2x, or none")
    needed = [] if args.whole else ["data/cifar-10-batches-py", "models/baseline.pt"]
    for path in needed:
        if not (ROOT / path).exists():
            raise SystemExit(f"{path} is missing: run `dvc repro train` first")
    env = environment(args.avx2)
    precision = "fp32, oneDNN and MKL capped at AVX2" if args.avx2 else ("bf16" if cpu_has_bf16() else "fp32")
    print(f"CPU: {cpu_description()}; {precision}; torch threads {torch.get_num_threads()}", flush=True)
    folder = Path(tempfile.mkdtemp()) if args.keep is None else args.keep
    clone = folder / "clone"
    if clone.exists():
        raise SystemExit(f"--keep {folder}: {clone} exists already; name another folder or remove it")
    env = clone_env(clone, env)
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        dvc = [sys.executable, "-m", "dvc"]
        if args.avx2:
            write_params(clone / "params.yaml", {"train.precision": "fp32"}, source=clone / "params.yaml")
        if not args.whole:
            subprocess.run([*dvc, "cache", "dir", "--local", str(ROOT / ".dvc/cache")], cwd=clone, check=True)
            subprocess.run([*dvc, "checkout", "-q"], cwd=clone, env=env, check=True)
            shutil.rmtree(clone / "metrics/sweep")
        print(f"dvc repro in {clone}:", flush=True)
        start = time.perf_counter()
        seconds = stage_seconds(clone, env)
        wall = time.perf_counter() - start
        # scores are deterministic on one kind of machine: a rerun must give the committed ones
        as_committed = accuracies(clone / "metrics/sweep") == accuracies(ROOT / "metrics/sweep")
        train = json.loads((clone / "metrics/train.json").read_text())
        test = json.loads((clone / "metrics/baseline.json").read_text())["baseline"]["acc"]
        if args.profile != "none":
            method, point = args.profile.split(":")
            profile_point(clone, method, point, seconds.get(f"sweep@{method}-{point}"), env)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    sweep = {name: s for name, s in seconds.items() if name.startswith("sweep@")}
    print(f"\n{'stage':<36}{'seconds':>9}")
    for name, s in seconds.items():
        if not name.startswith("sweep@"):
            print(f"{name:<36}{s:9.1f}")
    if sweep:
        per_point = sum(sweep.values()) / len(sweep)
        print(f"{f'sweep, {len(sweep)} points':<36}{sum(sweep.values()):9.1f}   ({per_point:.1f} s a point)")
    print(f"{'dvc repro, start to end':<36}{wall:9.1f}")
    print(
        f"baseline: {train['epochs']} epochs, {train['seconds']:.1f} s of training, validation "
        f"{train['val_acc']}, test {test} (evaluate.tta){'' if 'train' in seconds else ', as committed'}"
    )
    if not sweep:
        print("sweep: not rerun (its committed outputs were up to date with its deps)")
    elif not args.avx2:
        print(f"sweep scores as committed in metrics/sweep: {'yes' if as_committed else 'NO'}")
    print("reproduce: uv run python benchmarks/repro_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
