"""The seed notebook's experiment on `tutorial_cnn`, over several seeds: train the seed
profile's recipe (or a variant of it), then prune 40 % of conv1's filters by L1 norm one-shot,
as prunelab does (the pruned filter's bias folded into the next layer's bias, so the model
equals its compacted form) and as torch.nn.utils.prune does (bias kept, as the notebook did).
Test accuracy without test-time augmentation, as the notebook scored; the cost in points per
seed, then mean ± std. Seeded as the train stage seeds, so `dvc exp run` with the same params
on the same kind of machine gives the same baseline. Runs where `train.device` says (auto: a
GPU where present). Needs data/cifar-10-batches-py (`dvc repro fetch`).

    uv run python experiments/seed_experiment.py [--seeds 0,1,2,3] [KEY=VALUE ...]
    uv run python experiments/seed_experiment.py --seeds 0,1,2,3          # the seed profile
    uv run python experiments/seed_experiment.py train.epochs=50 'model.kwargs.widths=[96, 64, 128]'

KEY=VALUE sets a params key, in the syntax of `dvc exp run -S`, on top of the seed profile
(conf/profile/seed.yaml), as `dvc exp run -S profile=seed -S KEY=VALUE` would.
"""

import copy
import statistics
import sys
import time

import torch
import torch.nn.utils.prune as tprune

from prunelab.data import load_split, split_validation
from prunelab.device import device_description, resolve_runtime
from prunelab.models import build_model
from prunelab.params import parse_params
from prunelab.predict import split_accuracy
from prunelab.profiles import compose
from prunelab.pruning import prune_model
from prunelab.threads import cpu_share
from prunelab.train import fit

DATA = "data/cifar-10-batches-py"


def main(seeds: list[int], args: list[str]) -> None:
    for assignment in args:
        if "=" not in assignment:
            sys.exit(f"{assignment!r}: give KEY=VALUE, for example train.epochs=50")
    tree = compose(["profile=seed", *args])  # as `dvc exp run -S profile=seed -S KEY=VALUE` would
    params = parse_params(tree)
    train, _ = split_validation(load_split(DATA, train=True), params.data.val_size, params.data.split_seed)
    test = load_split(DATA, train=False)
    device, dtype = resolve_runtime(params.train.device, params.train.precision)
    print(
        f"{device_description(device)}, {torch.get_num_threads()} threads, {dtype}; params {tree}", flush=True
    )

    def test_acc(model: torch.nn.Module) -> float:
        return split_accuracy(model, test, batch_size=1000, device=device, dtype=torch.float32)

    costs, torch_costs = [], []
    for seed in seeds:
        cfg = params.train.model_copy(update={"seed": seed})
        torch.manual_seed(seed)
        model = build_model(params.model.arch, params.model.kwargs)
        started = time.perf_counter()
        fit(model, train, cfg, label=f"seed {seed}")
        seconds = time.perf_counter() - started
        base = test_acc(model)
        ours = copy.deepcopy(model)
        prune_model(ours, params.prune)  # the profile's: 40 % of conv1's filters by L1 norm
        theirs = copy.deepcopy(model)
        tprune.ln_structured(theirs.conv1, "weight", amount=0.4, n=1, dim=0)
        pruned, torch_pruned = test_acc(ours), test_acc(theirs)
        costs.append(100 * (base - pruned))
        torch_costs.append(100 * (base - torch_pruned))
        norms = model.conv1.weight.detach().abs().sum((1, 2, 3)).sort().values
        print(
            f"seed {seed}: baseline {base:.4f}, prunelab pruned {pruned:.4f} ({-costs[-1]:+.2f}), "
            f"torch pruned {torch_pruned:.4f} ({-torch_costs[-1]:+.2f}); trained in {seconds:.0f} s; "
            f"conv1 L1 norms {norms[0]:.2f}..{norms[-1]:.2f}",
            flush=True,
        )
    if len(seeds) > 1:
        for name, values in (("prunelab", costs), ("torch", torch_costs)):
            mean, std = statistics.mean(values), statistics.stdev(values)
            print(f"{name} cost over {len(seeds)} seeds: {mean:.2f} ± {std:.2f} points")
    print("reproduce: uv run python experiments/seed_experiment.py --seeds", ",".join(map(str, seeds)), *args)


if __name__ == "__main__":
    argv = sys.argv[1:]
    seed_list = [0, 1, 2, 3]
    if argv[:1] == ["--seeds"]:
        seed_list, argv = [int(s) for s in argv[1].split(",")], argv[2:]
    # Registered as a running stage while it runs, as the stages are: PRUNELAB_THREADS, or this
    # process's share of the cores when several run side by side.
    with cpu_share():
        main(seed_list, argv)
