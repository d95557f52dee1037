"""The comparison at a glance: sweep and sensitivity results as tables, DVC plot data and PNGs.

Pure formatting: every function takes the metrics the stages wrote and returns text or draws a
figure to the path it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sweep_table_markdown(
    points: list[dict[str, Any]], amounts: list[float | int], dense_acc: float | None
) -> str:
    """Rows: methods; columns: amounts; cells: validation accuracy, ± its std over seeds for
    seed-dependent methods (targeted sparsity)."""
    methods = list(dict.fromkeys(p["method"] for p in points))
    by_key = {(p["method"], p["amount"]): p for p in points}
    header = "| method | " + " | ".join(str(a) for a in amounts) + " |"
    lines = [header, "|---|" + "---|" * len(amounts)]
    for method in methods:
        cells = []
        for amount in amounts:
            p = by_key.get((method, amount))
            cells.append(f"{_accuracy(p)} ({p['targeted_sparsity']:.2f})" if p else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    dense = f"Dense baseline: {dense_acc:.4f}. " if dense_acc is not None else ""
    seeds = max((len(p.get("val_acc_by_seed", {})) for p in points), default=1)
    repeated = (
        f"Methods whose masks depend on the seed (random ones) show mean ± std over {seeds} seeds "
        "(sweep.seeds); the random methods are the sanity floor a criterion must beat. "
        if seeds > 1
        else ""
    )
    return (
        "# Pruning methods compared\n\n"
        f"Validation accuracy after one-shot pruning without fine-tuning (in brackets: the "
        f"fraction of targeted weights that are zero, counted). {dense}{repeated}\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _accuracy(point: dict[str, Any]) -> str:
    if len(point.get("val_acc_by_seed", {})) > 1:
        return f"{point['val_acc']:.4f} ± {point['val_acc_std']:.4f}"
    return f"{point['val_acc']:.4f}"


def plot_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "method": p["method"],
            "amount": p["amount"],
            "sparsity": p["targeted_sparsity"],
            "val_acc": p["val_acc"],
            "val_acc_std": p.get("val_acc_std", 0.0),
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
        ax.errorbar(
            [p["targeted_sparsity"] for p in mine],
            [p["val_acc"] for p in mine],
            yerr=[p.get("val_acc_std", 0.0) for p in mine],
            marker="o",
            capsize=3,
            label=method,
        )
    if dense_acc is not None:
        ax.axhline(dense_acc, color="black", linestyle="--", linewidth=1, label="dense baseline")
    ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("sparsity of the targeted weights")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Accuracy vs sparsity, one-shot pruning, no fine-tuning (bars: std over seeds)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)


def sensitivity_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Per-layer sensitivity\n",
        f"Validation accuracy (first {summary['val_images']} validation images) when one layer — or one "
        f"group of convs coupled by residual additions — is pruned alone. Dense: {summary['val_acc_dense']:.4f}.\n",
    ]
    for method, result in summary["methods"].items():
        curves = result["curves"]
        amounts = list(next(iter(curves.values())))
        lines += [
            f"## {method}\n",
            "| layer | " + " | ".join(amounts) + " |",
            "|---|" + "---|" * len(amounts),
        ]
        lines += [
            f"| {unit} | " + " | ".join(f"{c[a]:.4f}" for a in amounts) + " |" for unit, c in curves.items()
        ]
        d = result["derived"]
        verdict = "beats" if d["val_acc"] > d["uniform_val_acc"] else "does not beat"
        lines += [
            "",
            f"Derived amounts (loss ≤ {summary['budget']:.3f} per layer): "
            + ", ".join(f"{k} {v:g}" for k, v in d["per_layer"].items()),
            "",
            f"At the same sparsity of these layers ({d['sparsity']:.3f} derived, {d['uniform_sparsity']:.3f} uniform), "
            f"the derived amounts reach {d['val_acc']:.4f} and uniform pruning {d['uniform_val_acc']:.4f}: "
            f"derived {verdict} uniform.\n",
        ]
    return "\n".join(lines) + "\n"


def save_sensitivity_png(summary: dict[str, Any], path: Path) -> None:
    """One heat map per method: accuracy loss per layer (rows) and amount (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = summary["methods"]
    height = max(len(r["curves"]) for r in methods.values()) * 0.35 + 1.5
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), height), dpi=120, squeeze=False)
    for ax, (method, result) in zip(axes[0], methods.items(), strict=True):
        units = list(result["curves"])
        amounts = list(next(iter(result["curves"].values())))
        loss = (
            np.array([[summary["val_acc_dense"] - result["curves"][u][a] for a in amounts] for u in units])
            * 100
        )
        image = ax.imshow(loss, cmap="Reds", vmin=0, vmax=max(5.0, float(loss.max())), aspect="auto")
        ax.set_xticks(range(len(amounts)), amounts)
        ax.set_yticks(range(len(units)), [u if len(u) < 28 else u[:25] + "…" for u in units], fontsize=7)
        for i in range(len(units)):
            for j in range(len(amounts)):
                ax.text(j, i, f"{loss[i, j]:.1f}", ha="center", va="center", fontsize=7)
        ax.set_xlabel("amount pruned")
        ax.set_title(f"{method}: accuracy loss (points)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)
