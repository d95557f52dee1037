"""Every experiment's params and metrics from Python, through dvc.api: the most accurate compact
model whose measured latency fits a budget.

    python examples/best_under_latency.py --max-ms 2.5 --batch 1
    python examples/best_under_latency.py --repo https://github.com/you/prunelab --all-commits

Reads what `dvc exp show` shows (the workspace, its commit and the experiments derived from it;
pull a team's with `dvc exp pull origin` first). Needs only dvc, not torch or prunelab.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import dvc.api


def column(row: dict[str, Any], name: str) -> Any:
    """A value of an exp_show row; its key carries the file name where two files share a name."""
    for key, value in row.items():
        if key == name or key.endswith(f":{name}"):
            return value
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-ms", type=float, required=True, help="latency budget in milliseconds")
    parser.add_argument(
        "--batch", type=int, default=1, help="latency batch size (evaluate.latency_batch_sizes)"
    )
    parser.add_argument("--repo", default=None, help="path or git URL (default: this project)")
    parser.add_argument(
        "--all-commits", action="store_true", help="every commit's experiments, not only HEAD's"
    )
    args = parser.parse_args()

    rows = dvc.api.exp_show(repo=args.repo, num=-1 if args.all_commits else 1)
    latency_key = f"compact.latency_ms_b{args.batch}"
    candidates = []
    for row in rows:
        acc, latency = column(row, "compact.acc"), column(row, latency_key)
        if acc is None or latency is None:  # a failed or queued experiment, or no such batch size
            continue
        name = row.get("Experiment") or row["rev"]
        candidates.append((acc, latency, name, column(row, "prune.method"), column(row, "prune.amount")))
    if not candidates:
        print(f"no experiment has both compact.acc and {latency_key}; run `dvc repro` or `dvc exp run`")
        return 2
    print(f"{'experiment':<24} {'method':<22} {'amount':>7} {'test acc':>9} {'ms b' + str(args.batch):>8}")
    for acc, latency, name, method, amount in sorted(candidates, reverse=True):
        print(f"{name:<24} {method!s:<22} {amount!s:>7} {acc:>9.4f} {latency:>8.3f}")
    fitting = [c for c in candidates if c[1] <= args.max_ms]
    if not fitting:
        print(f"none is within {args.max_ms} ms at batch {args.batch}")
        return 1
    acc, latency, name, method, amount = max(fitting)
    print(
        f"best within {args.max_ms} ms at batch {args.batch}: {name} ({method}, amount {amount}): "
        f"test acc {acc:.4f}, {latency:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
