"""Training throughput of prunelab's loop against a tutorial-style loop, on this machine.

Prints, from one run:
  - images/s of prunelab's training step (in-memory uint8 data, batched crop/flip, channels_last,
    bf16 autocast where supported) and of a PyTorch-tutorial-style loop (DataLoader, per-sample
    PIL transforms, fp32) training the same model, and their ratio;
  - the fraction of a measured matmul peak that prunelab's step reaches;
  - time-to-accuracy of the last `dvc repro` (from dvclive/train and metrics/train.json), if present;
  - with --profile, where prunelab's step spends its time (torch.profiler, by operator).

    uv run python benchmarks/train_speed.py [--steps 20] [--batch-size 512] [--data data/cifar-10-batches-py]
        [--precision auto|fp32|bf16] [--profile]

Without bf16, as on an AVX2-only CPU (an emulation: oneDNN and MKL capped at AVX2):
    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 uv run python benchmarks/train_speed.py --precision fp32 --profile
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from prunelab.data import Split, load_split, normalize, random_crop_flip
from prunelab.device import autocast, cpu_description, resolve_precision
from prunelab.measure import count_macs
from prunelab.memory import MALLOC_ENV, keep_freed_memory
from prunelab.models import build_model
from prunelab.params import Params

console = Console(width=None if sys.stdout.isatty() else 160)  # logs: no wrapping at 80 columns


def default_model() -> torch.nn.Module:
    """The default params' model, initialised from seed 0: every speed benchmark times this one."""
    torch.manual_seed(0)
    defaults = Params()
    return build_model(defaults.model.arch, defaults.model.kwargs)


def training_images(folder: Path) -> Split:
    """CIFAR-10's training images if `folder` holds them, else 10,000 random ones: throughput
    does not depend on the content."""
    if (folder / "data_batch_1").is_file():
        return load_split(folder, train=True)
    return Split(
        torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (10_000,))
    )


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeat: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - start) / 1e9


def prunelab_step_rate(
    model: torch.nn.Module, data: Split, batch: int, steps: int, dtype: torch.dtype, profile: bool = False
) -> float:
    model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.2)

    def step(i: int) -> None:
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        x = normalize(random_crop_flip(data.images[idx], Params().train.translate, gen))
        with autocast(torch.device("cpu"), dtype):
            loss = loss_fn(model(x).float(), data.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    rate = batch * steps / (time.perf_counter() - start)
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for i in range(3):
                step(i)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        console.print("where the step's time goes (torch.profiler, 3 steps, self CPU time):")
        for event in events[:12]:
            console.print(f"  {event.key:<44} {event.self_cpu_time_total / total:6.1%}")
    return rate


def tutorial_step_rate(model: torch.nn.Module, data: Split, batch: int, steps: int) -> float:
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    transform = T.Compose(
        [
            T.ToPILImage(),
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        ]
    )

    class Cifar(Dataset):
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int):
            return transform(data.images[i]), data.labels[i]

    loader = DataLoader(Cifar(), batch_size=batch, shuffle=True, num_workers=2)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    seen, start = 0, None
    for i, (x, y) in enumerate(loader):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == 0:
            start = time.perf_counter()  # the first batch pays for worker start-up
        else:
            seen += len(y)
        if i == steps:
            break
    return seen / (time.perf_counter() - start)


def time_to_accuracy(live: Path, metrics: Path) -> None:
    curve, summary = live / "plots/metrics/val/acc.tsv", metrics
    if not (curve.is_file() and summary.is_file()):
        console.print("time-to-accuracy: no dvclive/train curve here; run `dvc repro` on the real data first")
        return
    # (step, acc) rows: DVCLive's step is the epoch index; train.val_every may skip epochs
    points = [
        (int(row.split("\t")[0]), float(row.split("\t")[1])) for row in curve.read_text().splitlines()[1:]
    ]
    train = json.loads(summary.read_text())
    per_epoch = train["seconds"] / max(1, train["epochs"])
    console.print(
        f"time-to-accuracy (last dvc repro, {train['provenance']['cpu']}, {train['provenance']['precision']}, {train['provenance']['threads']} threads): "
        + ", ".join(
            f"epoch {step + 1}: val {acc:.4f} @ {per_epoch * (step + 1):.0f} s" for step, acc in points
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--data", type=Path, default=Path("data/cifar-10-batches-py"))
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--profile", action="store_true", help="print the step's time by operator")
    args = parser.parse_args()
    reuse = keep_freed_memory()  # as every stage does (PRUNELAB_MALLOC=system: glibc's default)

    if not (args.data / "data_batch_1").is_file():
        console.print(
            f"{args.data} not found: timing on random images (throughput does not depend on content)"
        )
    data = training_images(args.data)
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    model = default_model()
    train_flops_per_image = 6 * count_macs(model)  # forward + backward ≈ 3 × forward, 2 FLOPs per MAC

    ours = prunelab_step_rate(model, data, args.batch_size, args.steps, dtype, args.profile)
    tutorial = tutorial_step_rate(default_model(), data, args.batch_size, args.steps)
    peak = matmul_peak(dtype)
    achieved = ours * train_flops_per_image / 1e9
    name = str(dtype).removeprefix("torch.")
    console.print(
        f"{cpu_description()}; threads: {torch.get_num_threads()}, precision: {name}, "
        f"batch {args.batch_size}, {args.steps} steps each; freed memory "
        + ("kept for reuse" if reuse else f"returned to the system ({MALLOC_ENV})")
    )
    console.print(f"prunelab training step: {ours:,.0f} images/s ({achieved:,.0f} GFLOP/s)")
    console.print(
        f"tutorial-style loop (DataLoader, per-sample PIL transforms, fp32): {tutorial:,.0f} images/s"
    )
    console.print(f"ratio: {ours / tutorial:.2f}×")
    console.print(
        f"{name} matmul peak measured: {peak:,.0f} GFLOP/s → training step reaches {achieved / peak:.0%} of it"
    )
    time_to_accuracy(Path("dvclive/train"), Path("metrics/train.json"))
    console.print(
        f"reproduce: uv run python benchmarks/train_speed.py --steps {args.steps} --batch-size {args.batch_size}"
        f" --precision {args.precision}" + (" --profile" if args.profile else "")
    )


if __name__ == "__main__":
    main()
