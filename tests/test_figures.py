"""Figures come from files: the README's results block is what the committed metrics render,
and every other figure in the README and docs/ is on a short allowlist with its reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunelab.figures import blocks_in, stale_blocks
from tests.conftest import ROOT

FIGURE = re.compile(
    r"(?<![\w.×])\d+(?:\.\d+)?×(?!\d)"  # a ratio: 4×, 1.5× (not a kernel size, 3×3)
    r"|(?<![\w.])\d+(?:\.\d+)?\s?%"  # a percentage: 92 %
    r"|(?<![\w.])\d+(?:,\d{3})*\.\d+(?!\.?\d)(?!\w)"  # a decimal: 0.9231, 1,166.5 (not a version: 2.15.0)
)

# What may stay typed by hand, per file, with the reason. Everything else is generated.
ALLOWED: dict[str, dict[str, str]] = {
    "README.md": {"3.11": "the Python version required"},
    "docs/params.md": {
        # generated from the schema (paramdoc; tests/test_paramdoc.py keeps it current)
        "0.0": "a bound of the schema",
        "1.0": "a bound of the schema",
        "0.5": "an example value of prune.macs_reduction",
        "0.01": "an example value of sensitivity.budget",
    },
}

HISTORY_BANNER = "> **History, not generated.**"


def prose(text: str) -> str:
    """Markdown without generated blocks, code blocks and inline code (commands, params)."""
    for body in blocks_in(text).values():
        text = text.replace(body, "")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def typed_figures(text: str, allowed: dict[str, str]) -> list[str]:
    return [m[0] for m in FIGURE.finditer(prose(text)) if m[0] not in allowed]


def checked_pages() -> list[Path]:
    """The README and docs/, except the history pages (each says at its top it is not generated)."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "history" not in p.parts)]


def test_the_readme_results_are_what_the_committed_metrics_render() -> None:
    text = (ROOT / "README.md").read_text()
    assert "results" in blocks_in(text), "README.md lost its generated results block"
    assert stale_blocks(text, ROOT) == [], (
        "README.md's results differ from the metrics: run `prunelab figures`"
    )


def test_a_changed_figure_is_caught_in_the_block_and_outside_it() -> None:
    text = (ROOT / "README.md").read_text()
    body = blocks_in(text)["results"]
    first = re.search(r"\d\.\d{4}", body)
    assert first, "the results block has no accuracy"
    digit = first[0][-1]
    tampered = body[: first.end() - 1] + str((int(digit) + 1) % 10) + body[first.end() :]
    assert stale_blocks(text.replace(body, tampered), ROOT) == ["results"]
    # a figure typed outside the block is caught too
    assert typed_figures(text + "\nThe pruned model scored 0.9123.\n", ALLOWED["README.md"]) == ["0.9123"]


@pytest.mark.parametrize("page", checked_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_figure_is_generated_or_allowed_with_a_reason(page: Path) -> None:
    name = str(page.relative_to(ROOT))
    typed = typed_figures(page.read_text(), ALLOWED.get(name, {}))
    assert not typed, (
        f"{name}: figures typed by hand {typed}; generate them, or allow one in this test with a reason"
    )


def test_history_pages_say_they_are_not_generated() -> None:
    pages = sorted((ROOT / "docs/history").glob("*.md"))
    assert pages
    for page in pages:
        if page.name != "README.md":
            assert page.read_text().startswith(HISTORY_BANNER), page


def test_the_readme_stays_a_front_door() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
