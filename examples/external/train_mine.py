"""The external project's own training script: writes a plain state_dict, as most projects do."""

import torch
from tinynet import make_net

from prunelab.data import load_split, normalize

torch.manual_seed(0)
train = load_split("data/cifar-10-batches-py", train=True)
model = make_net(width=16)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for start in range(0, min(len(train), 2048), 128):
    x, y = normalize(train.images[start : start + 128]), train.labels[start : start + 128]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
torch.save(model.state_dict(), "models/mine.pt")
