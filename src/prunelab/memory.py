"""How the process gets memory from the C library: freed memory kept for reuse.

glibc's malloc serves each allocation above its mmap threshold (at most 32 MB) with fresh pages
from the kernel and hands them back on free. A training step at batch 512 allocates dozens of
such tensors (one conv's activations are 67 MB in bf16), so every step faults fresh pages in
and zeroes them: torch.profiler showed max-pooling's backward spending 97 ms filling a 33 MB
buffer with zeros. Served from the heap and kept there, the same memory is reused step after
step: training epochs ran 1.05–1.07× faster (docs/recipe.md), for 8–22 % more peak memory.

Where a tensor's memory comes from does not change any arithmetic (torch aligns every CPU
tensor to 64 bytes either way), so outputs are the same bit for bit and dvc.yaml leaves this
module out of deps, as tests/test_structure.py records. PRUNELAB_MALLOC=system leaves the C
library's settings alone, for comparison.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

from prunelab.errors import UserError

MALLOC_ENV = "PRUNELAB_MALLOC"
CHOICES = ("reuse", "system")

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def malloc_choice(env: Mapping[str, str]) -> str:
    choice = env.get(MALLOC_ENV, "").strip() or "reuse"
    if choice not in CHOICES:
        raise UserError(f"{MALLOC_ENV}={choice!r}: give {' or '.join(CHOICES)}, or unset it")
    return choice


def keep_freed_memory(env: Mapping[str, str] = os.environ) -> bool:
    """Tell glibc to serve large allocations from the heap and not to return freed memory to the
    kernel, unless PRUNELAB_MALLOC=system. Returns whether the settings were applied: False on a
    C library without a working mallopt (macOS, musl), where nothing changes."""
    if malloc_choice(env) == "system":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError, TypeError):  # no mallopt there, or no dlopen (Windows)
        return False
    # mallopt returns 1 on success; the trim threshold is an int, so its largest value
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
