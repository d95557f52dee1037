"""The comparison at a glance: sweep results as a table, DVC plot data and a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.io import atomic_path


def sweep_table_markdown(
    points: list[dict[str, Any]], amounts: list[float | int], dense_acc: float | None
) -> str:
    """Rows: methods; columns: amounts; cells: validation accuracy (targeted sparsity)."""
    methods = list(dict.fromkeys(p["method"] for p in points))
    by_key = {(p["method"], p["amount"]): p for p in points}
    header = "| method | " + " | ".join(str(a) for a in amounts) + " |"
    lines = [header, "|---|" + "---|" * len(amounts)]
    for method in methods:
        cells = []
        for amount in amounts:
            p = by_key.get((method, amount))
            cells.append(f"{p['val_acc']:.4f} ({p['targeted_sparsity']:.2f})" if p else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    dense = f"Dense baseline: {dense_acc:.4f}. " if dense_acc is not None else ""
    return (
        "# Pruning methods compared\n\n"
        f"Validation accuracy after one-shot pruning without fine-tuning (in brackets: the "
        f"fraction of targeted weights that are zero, counted). {dense}\n\n" + "\n".join(lines) + "\n"
    )


def plot_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "method": p["method"],
            "amount": p["amount"],
            "sparsity": p["targeted_sparsity"],
            "val_acc": p["val_acc"],
        }
        for p in points
    ]


def save_sweep_png(points: list[dict[str, Any]], dense_acc: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method in dict.fromkeys(p["method"] for p in points):
        mine = sorted((p for p in points if p["method"] == method), key=lambda p: p["targeted_sparsity"])
        ax.plot(
            [p["targeted_sparsity"] for p in mine], [p["val_acc"] for p in mine], marker="o", label=method
        )
    if dense_acc is not None:
        ax.axhline(dense_acc, color="black", linestyle="--", linewidth=1, label="dense baseline")
    ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("sparsity of the targeted weights")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Accuracy vs sparsity, one-shot pruning, no fine-tuning")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
