"""`reason_code`: the rule that dropped a row, as `step.rule` (e.g. `basic.image_size`, `clip_top_fraction.below_cut`).

`reason` is for reading ("clip_score 0.12 < top 30% cut 0.28") and holds the numbers, so `group by reason` gives one
row per value; `reason_code` is for counting (`select reason_code, count(*) from decisions group by 1`). The code is
derived from the dropping step and its reason text (the one place that knows every step's wording), so it needs no
change in the steps themselves; an unrecognised reason gets `<step>.other` rather than failing the run.

Rules per step (first match wins):
    download            download.<status>            (the download status, e.g. download.blocked_private_network)
    dedup               dedup.<dup_kind>             (url, sha256, phash, semantic, eval_set)
    basic               basic.<first failing check>  (language, caption_words, image_size, aspect_ratio, ...)
    clip_threshold      no_score | min_score
    clip_top_fraction   no_score | below_cut | tie_by_uid | group_threshold | group_empty
    language            no_caption | not_listed | low_confidence
    caption_words       min_words | max_words
    image_size          no_size | min_side
    aspect_ratio        no_size | max_ratio
    nsfw_caption        term
"""

from __future__ import annotations

import re
from typing import Optional

import pyarrow as pa

REASON_CODE_COLUMN = "reason_code"

# step -> ordered (pattern searched in the reason, rule)
_RULES: dict[str, list[tuple[str, str]]] = {
    "clip_threshold": [(r"^no clip_score", "no_score"), (r"clip_score .* < ", "min_score")],
    "clip_top_fraction": [(r"^no clip_score", "no_score"), (r"no row of \S+ kept", "group_empty"),
                          (r"group threshold", "group_threshold"), (r"left out by uid order", "tie_by_uid"),
                          (r"cut|not in the top", "below_cut")],
    "language": [(r"^no caption", "no_caption"), (r"not in \[", "not_listed"), (r"min_confidence", "low_confidence")],
    "caption_words": [(r"min_words", "min_words"), (r"max_words", "max_words")],
    "image_size": [(r"^no .*image size", "no_size"), (r"min side", "min_side")],
    "aspect_ratio": [(r"^no .*image size", "no_size"), (r"aspect ratio", "max_ratio")],
    "nsfw_caption": [(r"NSFW term", "term")],
}
_COMPILED = {step: [(re.compile(p), rule) for p, rule in rules] for step, rules in _RULES.items()}
_DUP_KIND = re.compile(r"\((\w+)\)\s*$")
_FIRST_WORD = re.compile(r"^\s*(\w+)")


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text.strip()).strip("_").lower() or "other"


def reason_code(step: Optional[str], reason: Optional[str], failed_checks: Optional[list[str]] = None) -> Optional[str]:
    """`step.rule` for a row that `step` dropped with `reason`; None for a kept row (step None).

    failed_checks: for a composite step (basic), the names of its sub-checks the row failed, in order, when the
    caller has them (decisions' basic_<check> columns); otherwise they are read from the reason text.
    """
    if step is None:
        return None
    text = reason or ""
    if step == "download":
        return f"download.{_slug(text)}" if text else "download.other"
    if step == "dedup":
        match = _DUP_KIND.search(text)
        return f"dedup.{match.group(1)}" if match else "dedup.other"
    if step == "basic":
        if failed_checks:
            return f"basic.{failed_checks[0]}"
        first = _FIRST_WORD.match(text.split(";")[0])
        return f"basic.{first.group(1)}" if first else "basic.other"
    for pattern, rule in _COMPILED.get(step, []):
        if pattern.search(text):
            return f"{step}.{rule}"
    return f"{step}.other"


def with_reason_codes(decisions: pa.Table) -> pa.Table:
    """decisions with a `reason_code` column right after `reason` (replacing one already there)."""
    if REASON_CODE_COLUMN in decisions.column_names:
        decisions = decisions.drop_columns([REASON_CODE_COLUMN])
    steps = decisions.column("dropped_by").to_pylist()
    reasons = decisions.column("reason").to_pylist()
    checks = [c for c in decisions.column_names if c.startswith("basic_")]
    check_values = {c: decisions.column(c).to_pylist() for c in checks}
    codes: list[Optional[str]] = []
    for i, (step, reason) in enumerate(zip(steps, reasons)):
        failed = [c.removeprefix("basic_") for c in checks if check_values[c][i] is False] if step == "basic" else None
        codes.append(reason_code(step, reason, failed))
    at = decisions.column_names.index("reason") + 1
    return decisions.add_column(at, REASON_CODE_COLUMN, pa.array(codes, pa.string()))
