"""Every speed figure prunelab quotes, in one run, one benchmark after another (each alone on the
machine, since two heavy processes distort each other's timings):

  train_speed    training images/s, share of the matmul peak, time-to-accuracy of the last repro
  scoring_speed  seconds to score the test set at several evaluate.batch_size values
  daily_loop     the stages `dvc exp run -S prune.amount=0.6` reruns, and a no-op `dvc repro`
  queue_threads  a 4-job queue at -j 1 and -j 2 with thread sharing
  avx2_emulation sweep points natively and with oneDNN/MKL capped at AVX2 in fp32
  compile_speed  training and scoring eager against torch.compile (inductor)
  latency_budget how much speed-ups vary between repeats at several evaluate.latency_seconds
  malloc_speed   the training step with freed memory kept for reuse and without
  long_setting   the long setting's test accuracy and training time, seeds 0 and 1 (~22 minutes)

Run from the repository root after `dvc repro` (about 40 minutes on a 2-core CPU with bf16):

    uv run python benchmarks/all.py [--skip queue_threads avx2_emulation ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from prunelab.device import cpu_description, cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = {
    "train_speed": [],
    "scoring_speed": [],
    "daily_loop": [],
    "queue_threads": ["--skip-unshared"],
    "avx2_emulation": [],
    "compile_speed": [],
    "latency_budget": [],
    "malloc_speed": [],
    "long_setting": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", nargs="*", default=[], choices=list(BENCHMARKS))
    args = parser.parse_args()
    print(
        f"CPU: {cpu_description()}; bf16 autocast: {cpu_has_bf16()}; "
        f"torch threads {torch.get_num_threads()}; torch {torch.__version__}",
        flush=True,
    )
    failed = []
    for name, extra in BENCHMARKS.items():
        if name in args.skip:
            continue
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, f"benchmarks/{name}.py", *extra], cwd=ROOT)
        print(f"({name}: {time.perf_counter() - start:.0f} s, exit {run.returncode})", flush=True)
        if run.returncode != 0:
            failed.append(name)
    print("\nreproduce: uv run python benchmarks/all.py " + " ".join(sys.argv[1:]))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
