"""Every speed figure prunelab quotes, in one run, one benchmark after another (each alone on the
machine, since two heavy processes distort each other's timings):

  train_speed    training images/s, share of the matmul peak, time-to-accuracy of the last repro
  scoring_speed  seconds to score the test set at several evaluate.batch_size values
  daily_loop     the stages `dvc exp run -S prune.amount=0.6` reruns, and a no-op `dvc repro`
  queue_threads  a 4-job queue at -j 1 and -j 2 with thread sharing
  avx2_emulation sweep points natively and with oneDNN/MKL capped at AVX2 in fp32
  compile_speed  training and scoring eager against torch.compile (inductor)
  round_to       speed-ups of compact models at each channel rounding, eager and onnxruntime
  latency_budget how much speed-ups vary between repeats at several evaluate.latency_seconds
  malloc_speed   the training step with freed memory kept for reuse and without
  repro_speed    the comparison as `dvc repro` runs it, stage by stage, and one point's profile
  repro_whole    a fresh clone's whole `dvc repro` (repro_speed.py --whole; add --avx2 by hand for
                 the emulation without bf16, about 32 minutes)

Run from the repository root after `dvc repro` (on a 2-core CPU with bf16, repro_speed takes
about 5 minutes and repro_whole 7, with PRUNELAB_CIFAR10_ARCHIVE set where CIFAR-10 cannot be
downloaded). The long setting's time to accuracy is a study: experiments/long_setting.py.

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
BENCHMARKS = {  # name: the script and its arguments
    "train_speed": ("train_speed", []),
    "scoring_speed": ("scoring_speed", []),
    "daily_loop": ("daily_loop", []),
    "queue_threads": ("queue_threads", ["--skip-unshared"]),
    "avx2_emulation": ("avx2_emulation", []),
    "compile_speed": ("compile_speed", []),
    "finetune_speed": ("finetune_speed", []),
    "round_to": ("round_to", []),
    "latency_budget": ("latency_budget", []),
    "malloc_speed": ("malloc_speed", []),
    "repro_speed": ("repro_speed", []),
    "repro_whole": ("repro_speed", ["--whole", "--profile", "none"]),
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
    for name, (script, extra) in BENCHMARKS.items():
        if name in args.skip:
            continue
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, f"benchmarks/{script}.py", *extra], cwd=ROOT)
        print(f"({name}: {time.perf_counter() - start:.0f} s, exit {run.returncode})", flush=True)
        if run.returncode != 0:
            failed.append(name)
    print("\nreproduce: uv run python benchmarks/all.py " + " ".join(sys.argv[1:]))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
