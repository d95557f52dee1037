"""docs/params.md, generated from the schema: one table per section, from the fields' types,
defaults and docstrings, so the reference cannot drift from the code.

    python -m prunelab.paramdoc > docs/params.md
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from prunelab.params import Params

HEADER = """# Parameters

Generated from `src/prunelab/params.py` by `python -m prunelab.paramdoc > docs/params.md`; a
test fails when this file is out of date. Every key lives in `params.yaml`, which `dvc exp run`
composes from `conf/config.yaml` and a profile (Hydra), and is validated against the schema
before any work: a bad value stops the stage with one line that names the key,
the value and what is allowed (exit status 2). Values are taken as written: no quoted numbers, no
true/false for numbers, no NaN or infinity, no key given twice; unknown keys get a "did you mean".
"""


def reference_markdown() -> str:
    parts = [HEADER.rstrip("\n")]
    sections = {
        k: f
        for k, f in Params.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    }
    top = {k: f for k, f in Params.model_fields.items() if k not in sections}
    if top:
        parts.append("\n## Top level\n")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        for name, field in top.items():
            parts.append(
                f"| `{name}` | {_field_type(field)} | {_default(field)} | {_one_line(field.description or '')} |"
            )
    for section, info in sections.items():
        model: type[BaseModel] = info.annotation  # type: ignore[assignment]
        parts.append(f"\n## `{section}`\n\n{_one_line(model.__doc__ or '')}\n")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        for name, field in model.model_fields.items():
            parts.append(
                f"| `{section}.{name}` | {_field_type(field)} | {_default(field)} "
                f"| {_one_line(field.description or '')} |"
            )
    return "\n".join(parts) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`".replace("|", "\\|")


def _field_type(field: FieldInfo) -> str:
    # pydantic moves a field's own constraints from its annotation into `metadata`
    bounds = [_bound(m) for m in field.metadata]
    return ", ".join([_type(field.annotation), *(b for b in bounds if b)])


def _type(annotation: Any) -> str:
    """A short, readable type: 'int ≥ 0', 'one of auto, fp32, bf16', 'list of str'."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base, *meta = args
        bounds = [_bound(m) for m in meta for m in getattr(m, "metadata", [m])]
        return ", ".join([_type(base), *(b for b in bounds if b)])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _bound(meta: Any) -> str:
    for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥")):
        if getattr(meta, attr, None) is not None:
            return f"{symbol} {getattr(meta, attr)}"
    return ""


if __name__ == "__main__":
    print(reference_markdown(), end="")
