""""Did you mean …?": the closest valid names to a mistyped one, for errors about config keys, steps, models and tags.

difflib's ratio on lower-cased names (so `vit-b-32` finds `ViT-B-32`); an exact case-insensitive match comes first.
"""

from __future__ import annotations

import difflib
from typing import Iterable, Optional, get_args


def closest(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Up to n candidates closest to word, best first."""
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(str(c).lower(), str(c))
    key = str(word).lower()
    if key in by_lower:
        return [by_lower[key]]
    found = difflib.get_close_matches(key, list(by_lower), n=n, cutoff=cutoff)
    if not found:
        return []
    # a clearly closer name is the answer alone ("image_sise" -> image_size, not also max_image_pixels)
    best = difflib.SequenceMatcher(None, key, found[0]).ratio()
    return [by_lower[m] for m in found if difflib.SequenceMatcher(None, key, m).ratio() >= best - 0.1]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """" (did you mean X?)" or "" when nothing is close."""
    matches = closest(word, candidates)
    if not matches:
        return ""
    return f" (did you mean {' or '.join(matches[:2])}?)"


def _models_in(annotation) -> list[type]:
    """The pydantic model classes inside a field's annotation (through Optional, list, Annotated and Union)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type] = []
    for arg in get_args(annotation):
        found += [m for m in _models_in(arg) if m not in found]
    return found


def _model_at(root, loc: tuple) -> Optional[type]:
    """The model class that holds the last key of an error location, walking fields, list indexes and union tags."""
    model = root
    options: list[type] = [root]
    for part in loc:
        if isinstance(part, int):
            continue
        tagged = [m for m in options if "name" in m.model_fields and m.model_fields["name"].default == part]
        if len(options) > 1 and tagged:
            model, options = tagged[0], tagged
            continue
        if model is None or part not in model.model_fields:
            return None
        options = _models_in(model.model_fields[part].annotation)
        model = options[0] if len(options) == 1 else None
    return model


def validation_lines(exc, root, prefix: str = "") -> list[str]:
    """One line per pydantic error: where, what, and for an unknown key the closest valid key and all valid keys."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = prefix + (".".join(str(x) for x in loc) or "(top level)")
        message = err["msg"]
        if err.get("type") == "extra_forbidden" and loc:
            holder = _model_at(root, loc[:-1])
            if holder is not None:
                keys = list(holder.model_fields)
                guess = did_you_mean(str(loc[-1]), keys)
                section = prefix + ".".join(str(x) for x in loc[:-1] if not isinstance(x, int)) or "the top level"
                message = f"unknown key{guess}; valid keys of {section}: {', '.join(keys)}"
        lines.append(f"  {where}: {message}")
    return lines
