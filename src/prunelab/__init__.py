"""prunelab: reproducible pruning experiments for PyTorch CNNs on CIFAR-10."""

import logging

# torch.utils.benchmark imports torch's C++-extension builder, which warns about CUDA_HOME on
# every CPU-only machine at import; prunelab builds no extension, so the warning is only noise
# in stage logs.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
