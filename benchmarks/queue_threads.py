"""Total time of N training stages run one at a time and two at a time, as `dvc queue start -j 1`
and `-j 2` run experiments: with prunelab's thread sharing (each running stage takes
cores // running stages), and with every stage taking all cores (torch's default, and
prunelab's before sharing; PRUNELAB_THREADS=<cores> reproduces it), and with the share pinned
from the start (PRUNELAB_THREADS=<cores / 2>).

Each job is the real train stage (`stages/train.py`) for one epoch of a narrower CNN on the
CIFAR-10 directory, so that the whole comparison takes minutes.

    uv run python benchmarks/queue_threads.py [--jobs 4] [--data data/cifar-10-batches-py] [--widths 32,64,128]
        [--skip-unshared]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_params

from prunelab.device import cpu_description, cpu_has_bf16
from prunelab.threads import THREADS_ENV, cpu_cores


def run_jobs(jobs: int, parallel: int, params: Path, data: Path, work: Path, env: dict[str, str]) -> float:
    """Wall time of `jobs` train stages, at most `parallel` at once."""
    pending = list(range(jobs))
    running: list[subprocess.Popen[bytes]] = []
    start = time.perf_counter()
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            out = work / f"job{job}"
            cmd = [
                sys.executable,
                str(ROOT / "stages/train.py"),
                "--params",
                str(params),
                "--data",
                str(data),
            ]
            cmd += ["--out", str(out / "b.pt"), "--metrics", str(out / "t.json"), "--live", str(out / "live")]
            running.append(
                subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            if proc.returncode != 0:
                raise SystemExit(
                    f"a train job failed (exit {proc.returncode}): {' '.join(map(str, proc.args))}"
                )
            running.remove(proc)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--data", type=Path, default=ROOT / "data/cifar-10-batches-py")
    parser.add_argument("--widths", default="32,64,128")
    parser.add_argument(
        "--skip-unshared", action="store_true", help="leave out every job taking all cores (the slowest mode)"
    )
    args = parser.parse_args()
    if not (args.data / "data_batch_1").exists():
        raise SystemExit(f"--data {args.data}: no CIFAR-10 batches there; run `dvc repro fetch` first")
    cores = cpu_cores()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = work / "params.yaml"
        widths = [int(w) for w in args.widths.split(",")]
        write_params(params, {"model.kwargs": {"widths": widths}, "train.epochs": 1})
        base = {k: v for k, v in os.environ.items() if k != THREADS_ENV}
        base["PRUNELAB_LOCK_DIR"] = str(work / "locks")  # only these jobs share the cores
        modes = [
            ("-j 1", 1, base),
            ("-j 2, threads shared (default)", 2, base),
            (f"-j 2, {THREADS_ENV}={max(1, cores // 2)}", 2, {**base, THREADS_ENV: str(max(1, cores // 2))}),
        ]
        if not args.skip_unshared:
            modes.append((f"-j 2, every job {cores} threads", 2, {**base, THREADS_ENV: str(cores)}))
        print(
            f"{args.jobs} train stages, 1 epoch of cnn widths {args.widths}; {cpu_description()}, "
            f"{cores} cores, {'bf16 autocast' if cpu_has_bf16() else 'fp32'}",
            flush=True,
        )
        results = {}
        for name, parallel, env in modes:
            results[name] = run_jobs(args.jobs, parallel, params, args.data, work, env)
            print(f"  {name:<34} {results[name]:7.1f} s", flush=True)
        reference = results["-j 1"]
        print("relative to -j 1 (lower is better):")
        for name, seconds in results.items():
            print(f"  {name:<34} {seconds / reference:6.2f}×")
    print("reproduce: uv run python benchmarks/queue_threads.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
