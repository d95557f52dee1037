"""What every report and figure says under it: where its result was made (the provenance block
that provenance.py writes into every metrics file), in one line."""

from __future__ import annotations

from typing import Any


def provenance_line(provenance: dict[str, Any] | None) -> str:
    """Where a result was made, in one line."""
    if not provenance:
        return "Provenance: not recorded."
    versions = ", ".join(f"{name} {version}" for name, version in provenance["versions"].items())
    gpu = f", GPU {provenance['gpu']}" if provenance["gpu"] != "none" else ""
    epochs = (
        f", baseline trained {counted(provenance['epochs'], 'epoch')}" if provenance.get("epochs") else ""
    )
    return (
        f"Made on {provenance['cpu']} ({provenance['cpu_flags']}){gpu}, {provenance['precision']}, "
        f"{counted(provenance['threads'], 'thread')}{epochs}; {versions}."
    )


def counted(number: float, noun: str) -> str:
    """ "1 thread", "2 threads", "0.5 epochs": the noun singular for exactly one."""
    return f"{number:g} {noun}" + ("" if number == 1 else "s")


def caption_figure(fig: Any, provenance: dict[str, Any] | None) -> None:
    """Lay out a matplotlib figure with its provenance line under it."""
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.text(0.01, 0.01, provenance_line(provenance), fontsize=7, color="dimgrey")
