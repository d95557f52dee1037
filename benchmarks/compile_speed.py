"""Does torch.compile (the inductor CPU backend) pay here? Times prunelab's training step and the
test set's scoring (evaluate.tta, evaluate.batch_size) eager and compiled, each with what its
compilation cost, in one run. Scoring is also compiled with inductor's freezing, which folds
BatchNorm into the convolutions and is for inference only.

Run from the repository root (after `dvc repro` it scores models/baseline.pt; without it, an
untrained model, as speed does not depend on the weights):

    uv run python benchmarks/compile_speed.py [--steps 15] [--modes default max-autotune-no-cudagraphs]
                                              [--cold]

Inductor keeps what it compiled on disk (TORCHINDUCTOR_CACHE_DIR), so a second run compiles
faster; --cold compiles into an empty cache, as a fresh machine or a new model shape would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
from train_speed import default_model, prunelab_step_rate

from prunelab.checkpoints import load_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.data import Split, load_split
from prunelab.device import cpu_description, dtype_name, resolve_precision
from prunelab.params import Params
from prunelab.predict import accuracy, predict

DATA = Path("data/cifar-10-batches-py")


def training(mode: str, data: Split, steps: int, dtype: torch.dtype) -> tuple[float, float]:
    """(images/s once compiled, seconds of the first step, compilation included)."""
    model = default_model()
    torch._dynamo.reset()  # Dynamo would reuse another mode's graph for a module of the same structure
    if mode != "eager":
        model = torch.compile(model, mode=None if mode == "default" else mode)
    start = time.perf_counter()
    prunelab_step_rate(model, data, 512, 1, dtype)  # the first steps compile
    first = time.perf_counter() - start
    return prunelab_step_rate(model, data, 512, steps, dtype), first


def scoring(mode: str, test: Split, dtype: torch.dtype) -> tuple[float, float, float]:
    """(seconds to score the test set once compiled, seconds of the compiling call, accuracy)."""
    cfg = Params().evaluate
    path = Path("models/baseline.pt")
    model = load_model(load_checkpoint(path), str(path)) if path.is_file() else default_model()
    model.eval()
    torch._dynamo.reset()
    inductor_config.freezing = mode == "freezing"
    if mode != "eager":
        model = torch.compile(model)

    def score(images: torch.Tensor) -> torch.Tensor:
        return predict(model, images, batch_size=cfg.batch_size, dtype=dtype, tta=cfg.tta)

    start = time.perf_counter()
    score(test.images[: cfg.batch_size])
    first = time.perf_counter() - start
    start = time.perf_counter()
    logits = score(test.images)
    return time.perf_counter() - start, first, accuracy(logits, test.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--modes", nargs="+", default=["default", "max-autotune-no-cudagraphs"])
    parser.add_argument("--cold", action="store_true", help="compile into an empty inductor cache")
    args = parser.parse_args()
    if args.cold:  # read when inductor first compiles
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    if not (DATA / "test_batch").is_file():
        raise SystemExit(f"{DATA} is missing: run `dvc repro fetch` first")
    dtype = resolve_precision("auto", torch.device("cpu"))
    train, test = load_split(DATA, train=True), load_split(DATA, train=False)
    steps = {mode: training(mode, train, args.steps, dtype) for mode in ["eager", *args.modes]}
    scores = {mode: scoring(mode, test, dtype) for mode in ["eager", "default", "freezing"]}
    cache = "an empty inductor cache" if args.cold else "inductor's cache as it was"
    print(f"CPU: {cpu_description()}; {dtype_name(dtype)}; torch threads {torch.get_num_threads()}; {cache}")
    print(f"training step, batch 512, {args.steps} steps after the first:")
    for mode, (rate, first) in steps.items():
        ratio = rate / steps["eager"][0]
        print(f"  {mode:<28} {rate:7.0f} images/s ({ratio:.2f}× eager); first step {first:5.1f} s")
    print("scoring the 10,000 test images (evaluate.tta, evaluate.batch_size):")
    for mode, (seconds, first, acc) in scores.items():
        ratio = scores["eager"][0] / seconds
        print(
            f"  {mode:<28} {seconds:6.2f} s ({ratio:.2f}× eager); first batch {first:5.1f} s; acc {acc:.4f}"
        )
    print("reproduce: uv run python benchmarks/compile_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
