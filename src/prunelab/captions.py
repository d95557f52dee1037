"""What every report and figure says under it: where its result was made (the provenance block
that provenance.py writes into every metrics file), in one line."""

from __future__ import annotations

from typing import Any


def provenance_line(provenance: dict[str, Any] | None) -> str:
    """Where a result was made, in one line."""
    if not provenance:
        return "Provenance: not recorded."
    versions = ", ".join(f"{name} {version}" for name, version in provenance["versions"].items())
    return f"Made on {setting(provenance)}; {versions}."


def setting(provenance: dict[str, Any], threads: bool = True) -> str:
    """The machine, precision, threads and baseline epochs a result was made with: what two
    results compared side by side should share (but threads, which change only speed and the
    last bits)."""
    gpu = f", GPU {provenance['gpu']}" if provenance["gpu"] != "none" else ""
    threads_used = f", {counted(provenance['threads'], 'thread')}" if threads else ""
    epochs = (
        f", baseline trained {counted(provenance['epochs'], 'epoch')}" if provenance.get("epochs") else ""
    )
    return f"{provenance['cpu']} ({provenance['cpu_flags']}){gpu}, {provenance['precision']}{threads_used}{epochs}"


def counted(number: float, noun: str) -> str:
    """ "1 thread", "2 threads", "0.5 epochs": the noun singular for exactly one."""
    return f"{number:g} {noun}" + ("" if number == 1 else "s")


def p_value(p: float) -> str:
    """ "p = 0.012", as reports print it. A p too small for a float underflows to 0, which would
    read as certainty: it prints as "p < 1e-300"."""
    return f"p = {p:.2g}" if p >= 1e-300 else "p < 1e-300"


def caption_figure(fig: Any, provenance: dict[str, Any] | None) -> None:
    """Lay out a matplotlib figure with its provenance line under it."""
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.text(0.01, 0.01, provenance_line(provenance), fontsize=7, color="dimgrey")
