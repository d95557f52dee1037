"""Resolve user code named by import path ('package.module:attribute')."""

from __future__ import annotations

import importlib
from typing import Any

from prunelab.errors import UserError


def is_import_path(name: str) -> bool:
    return ":" in name


def load_object(path: str, param: str) -> Any:
    """Import `module:attr` (attr may be dotted); errors name the param and the path."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UserError(f"{param}: '{path}' is not an import path of the form 'package.module:name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is the user's to fix
        raise UserError(
            f"{param}: cannot import module '{module_name}' of '{path}' "
            f"({type(exc).__name__}: {exc}); is it installed or on PYTHONPATH?"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{param}: module '{module_name}' has no attribute '{attr}' ('{path}')")
        obj = getattr(obj, part)
    return obj
