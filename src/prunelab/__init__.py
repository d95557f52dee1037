"""prunelab: reproducible pruning experiments for PyTorch CNNs on CIFAR-10."""
