"""Scoring speed: seconds to score the 10,000 test images with evaluate.tta (4 passes for
flip_translate) at several evaluate.batch_size values, in interleaved rounds, and whether the
predictions agree. On a CPU a small batch keeps each layer's activations in cache.

Run from the repository root after `dvc repro` (it reads data/ and models/baseline.pt):

    uv run python benchmarks/scoring_speed.py [--batch-sizes 1000 250 100 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from prunelab.checkpoints import load_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.data import load_split
from prunelab.device import cpu_description, dtype_name, resolve_runtime
from prunelab.params import load_params
from prunelab.predict import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1000, 250, 100, 50])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="models/baseline.pt")
    args = parser.parse_args()
    cfg = load_params("params.yaml")
    device, dtype = resolve_runtime(cfg.train.device, cfg.train.precision)
    test = load_split("data/cifar-10-batches-py", train=False)
    net = load_model(load_checkpoint(args.model), args.model)
    seconds: dict[int, list[float]] = {b: [] for b in args.batch_sizes}
    predictions: dict[int, torch.Tensor] = {}
    for _ in range(args.rounds):
        for batch in args.batch_sizes:
            start = time.perf_counter()
            logits = predict(
                net, test.images, batch_size=batch, device=device, dtype=dtype, tta=cfg.evaluate.tta
            )
            seconds[batch].append(time.perf_counter() - start)
            predictions[batch] = logits.argmax(1)
    print(
        f"CPU: {cpu_description()}; device {device}; {dtype_name(dtype)}; torch threads {torch.get_num_threads()}"
    )
    print(f"{args.model}, 10,000 test images, tta {cfg.evaluate.tta}, {args.rounds} interleaved rounds")
    first = args.batch_sizes[0]
    print(f"{'batch':>6}{'median s':>10}{'× vs ' + str(first):>12}{'test acc':>10}{'same argmax':>13}")
    for batch, runs in seconds.items():
        ratio = statistics.median(seconds[first]) / statistics.median(runs)
        acc = (predictions[batch] == test.labels).float().mean().item()
        agree = (predictions[batch] == predictions[first]).float().mean().item()
        print(f"{batch:>6}{statistics.median(runs):>10.2f}{ratio:>12.2f}{acc:>10.4f}{agree:>13.4f}")
    print("reproduce: uv run python benchmarks/scoring_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
