"""The seed notebook's experiment on `tutorial_cnn`: train it, then prune 40 % of conv1's filters
by L1 norm one-shot, both as prunelab does (the pruned filter's bias folded into the next layer's
bias, so the model equals its compacted form) and as torch.nn.utils.prune does (bias kept, as
the notebook did).
Test accuracy without test-time augmentation. Needs data/cifar-10-batches-py (`dvc repro fetch`).

    uv run python benchmarks/seed_experiment.py LR EPOCHS WEIGHT_DECAY LABEL_SMOOTHING WIDTHS
    uv run python benchmarks/seed_experiment.py 0.05 25 0.003 0.2 64,64,128   # the seed profile
"""

import copy
import sys
import time

import torch
import torch.nn.utils.prune as tprune

from prunelab.data import load_split, split_validation
from prunelab.device import cpu_description
from prunelab.models import build_model
from prunelab.params import parse_params
from prunelab.predict import accuracy, predict
from prunelab.prune import prune_model
from prunelab.train import fit

lr, epochs, wd, ls = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
widths = [int(w) for w in sys.argv[5].split(",")]
p = parse_params(
    {
        "model": {"arch": "tutorial_cnn", "kwargs": {"widths": widths}},
        "train": {"lr": lr, "epochs": epochs, "whiten": False, "weight_decay": wd, "label_smoothing": ls},
    }
)
data = "data/cifar-10-batches-py"
tr, va = split_validation(load_split(data, train=True), 5000, 0)
test = load_split(data, train=False)
torch.manual_seed(0)
m = build_model("tutorial_cnn", {"widths": widths})
t = time.time()
fit(m, tr, p.train)
print(
    "train s",
    round(time.time() - t, 1),
    f"({cpu_description()}, {torch.get_num_threads()} threads, train.precision auto)",
    flush=True,
)
dev = torch.device("cpu")


def acc(net, tta="none"):
    return round(
        accuracy(
            predict(net, test.images, batch_size=1000, device=dev, dtype=torch.float32, tta=tta), test.labels
        ),
        4,
    )


print("test acc", acc(m), flush=True)
q = copy.deepcopy(m)
prune_model(q, p.prune.model_copy(update={"method": "ln_structured", "amount": 0.4, "targets": ["conv1"]}))
print("prunelab ln_structured 40% conv1 (pruned filters' biases folded into conv2):", acc(q))
q = copy.deepcopy(m)
tprune.ln_structured(q.conv1, "weight", amount=0.4, n=1, dim=0)
print("torch tutorial ln_structured 40% conv1 (bias kept):", acc(q))
norms = m.conv1.weight.detach().abs().sum((1, 2, 3))
print("conv1 L1 norms sorted", [round(x, 2) for x in norms.sort().values.tolist()])
print("reproduce: uv run python benchmarks/seed_experiment.py " + " ".join(sys.argv[1:]))
