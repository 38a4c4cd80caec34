"""Versioned prompt and label-set files of the zero-shot probes (one JSON file each, with `version` and `sources`).

They are data, not code, so that a reader can see exactly which words a number came from, and so that every
output can carry the file it used (probes write them to prompts_used.json, `audit --perceived` to the manifest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROMPTS_DIR = Path(__file__).resolve().parent


def load_prompt_file(name: str) -> dict[str, Any]:
    """The prompt file `name` (e.g. "fairface"); a clear error when it is missing or lacks its version."""
    path = PROMPTS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.json"))
        raise FileNotFoundError(f"prompt file {path} not found; known prompt files: {known}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    for field in ("name", "version", "sources"):
        if field not in data:
            raise ValueError(f"{path} lacks the field '{field}'")
    return data
