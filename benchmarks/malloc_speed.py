"""What keeping freed memory for reuse (memory.py, every stage's default) does to a training
step: prunelab's step on the default model at batch 512, in fresh processes that alternate
PRUNELAB_MALLOC=reuse and =system, with each process's peak memory.

    uv run python benchmarks/malloc_speed.py [--rounds 3] [--steps 12] [--precision auto|fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from train_speed import default_model, prunelab_step_rate, training_images

from prunelab.device import cpu_description, dtype_name, resolve_precision
from prunelab.memory import MALLOC_ENV, keep_freed_memory

DATA = Path("data/cifar-10-batches-py")


def child(steps: int, precision: str) -> None:
    applied = keep_freed_memory()
    data = training_images(DATA)
    dtype = resolve_precision(precision, torch.device("cpu"))
    model = default_model()
    prunelab_step_rate(model, data, 512, 2, dtype)  # warm-up: oneDNN picks its kernels
    rate = prunelab_step_rate(model, data, 512, steps, dtype)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    print(json.dumps({"rate": rate, "peak_mb": peak_mb, "applied": applied, "dtype": dtype_name(dtype)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.steps, args.precision)
        return
    found: dict[str, list[dict]] = {"reuse": [], "system": []}
    for _ in range(args.rounds):
        for choice, runs in found.items():
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--steps",
                    str(args.steps),
                    "--precision",
                    args.precision,
                ],
                env={**os.environ, MALLOC_ENV: choice},
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    dtype = found["reuse"][0]["dtype"]
    print(f"CPU: {cpu_description()}; {dtype}; torch threads {torch.get_num_threads()}")
    print(
        f"training step, default model, batch 512, {args.steps} steps a process, {args.rounds} rounds alternating"
    )
    for choice, runs in found.items():
        rates = [r["rate"] for r in runs]
        print(
            f"  {MALLOC_ENV}={choice:<7} images/s {', '.join(f'{r:.0f}' for r in rates)} "
            f"(median {statistics.median(rates):.0f}); peak memory {max(r['peak_mb'] for r in runs):,.0f} MB"
            + ("" if choice == "system" or runs[0]["applied"] else " (not applied: no glibc mallopt)")
        )
    ratios = [a["rate"] / b["rate"] for a, b in zip(found["reuse"], found["system"], strict=True)]
    print(f"  reuse / system, round by round: {', '.join(f'{r:.2f}×' for r in ratios)}")
    print("reproduce: uv run python benchmarks/malloc_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
