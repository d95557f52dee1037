"""The long setting's time to accuracy (docs/recipe.md, "The long setting"): the `long` profile
(conf/profile/long.yaml: airbench94's net, its whitening stem frozen, 16 epochs on all 50,000
training images), through the train and evaluate stages as a user runs them, once per seed, one
seed after another. Prints the test
accuracy (evaluate.tta), the seconds of training and of the whole train stage, and the CPU,
precision and threads they hold for. Needs data/cifar-10-batches-py (`dvc repro fetch`); with
models/baseline.pt present, the first seed's latency is measured against it.

    uv run python experiments/long_setting.py [--seeds 0 1] [--epochs 16] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from prunelab.device import cpu_description
from prunelab.profiles import compose

ROOT = Path(__file__).resolve().parents[1]


def run_seed(folder: Path, seed: int, epochs: int, with_latency: bool) -> dict:
    params = folder / f"long_s{seed}.yaml"
    # as `dvc exp run -S profile=long -S train.seed=SEED -S train.epochs=EPOCHS` would write it
    params.write_text(
        yaml.safe_dump(compose(["profile=long", f"train.seed={seed}", f"train.epochs={epochs}"]))
    )
    out = folder / f"s{seed}"
    stage_seconds = stage(
        "train", "-p", params, "--out", out / "model.pt", "--metrics", out / "train.json",
        "--live", out / "live", "--resume", out / "resume.pt",
    )  # fmt: skip
    models = ["--model", f"long={out / 'model.pt'}"]
    baseline = ROOT / "models/baseline.pt"
    latency = ["--model", f"baseline={baseline}"] if with_latency and baseline.exists() else ["--no-latency"]
    stage(
        "evaluate", "-p", params, *models, *latency, "--metrics", out / "evaluate.json",
        "--plots", out / "confusion",
    )  # fmt: skip
    train = json.loads((out / "train.json").read_text())
    evaluate = json.loads((out / "evaluate.json").read_text())
    return {"seed": seed, "train": train, "stage_seconds": stage_seconds, "evaluate": evaluate}


def stage(name: str, *args: object) -> float:
    """Seconds that stages/NAME.py takes as a whole process; a failure stops the experiment."""
    cmd = [sys.executable, f"stages/{name}.py", *map(str, args)]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--keep", type=Path, help="write the runs here instead of a temporary folder")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}; the long profile, train.epochs {args.epochs}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = (args.keep or Path(scratch)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        accs = []
        for k, seed in enumerate(args.seeds):
            run = run_seed(folder, seed, args.epochs, with_latency=k == 0)
            train, long = run["train"], run["evaluate"]["long"]
            accs.append(long["acc"])
            latency = (
                f"; {long['latency_ms_b128']} ms a batch of 128 ({long['speedup_b128']}× the baseline's speed)"
                if "latency_ms_b128" in long
                else ""
            )
            print(
                f"seed {seed}: test {long['acc']:.4f} ({run['evaluate']['scoring']['tta']}) after "
                f"{train['epochs']} epochs on {train['train_images']} images; training {train['seconds']} s, "
                f"train stage {run['stage_seconds']:.0f} s; {train['precision']}, {train['threads']} threads"
                f"{latency}",
                flush=True,
            )
    mean = statistics.mean(accs)
    spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
    print(f"mean test accuracy over {len(accs)} seed(s): {mean:.5f}{spread}")
    print("reproduce: uv run python experiments/long_setting.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
