"""Terminal output of stages: a summary per stage, warnings that name the fix, and the funnel table of a run.

On a terminal a summary is a small table; in a log (output not a terminal) the same lines are plain text and never
wrapped, so a command printed in it can be copied whole. With `--json` (`set_json_output(True)`) every stage prints
one JSON object on stdout instead: {"stage", "status", "seconds", "counts", "warnings"}; human-readable output stays
on stderr. The raw counts are always in manifest.json.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_probe = Console(stderr=True)
# not a terminal: no hard wrapping (soft_wrap), so long commands and paths stay on one line in logs
console = Console(stderr=True, soft_wrap=not _probe.is_terminal)
_json_output = False

INLINE_ITEMS = 8  # a nested mapping with at most this many plain values is shown on one line


def set_json_output(enabled: bool) -> None:
    global _json_output
    _json_output = enabled


def json_output() -> bool:
    return _json_output


# ---- warnings that name the fix ----

def _status_counts(counts: dict) -> dict[str, int]:
    status = counts.get("status")
    return {str(k): int(v) for k, v in status.items()} if isinstance(status, dict) else {}


def stage_warnings(stage: str, counts: dict) -> list[str]:
    """What a user must know about a finished stage, each with what to do about it."""
    out: list[str] = []
    if stage == "download":
        status = _status_counts(counts)
        rows = int(counts.get("rows") or sum(status.values()))
        blocked = status.get("blocked_private_network", 0)
        if rows and blocked == rows:
            out.append(f"all {rows} downloads were refused because their hosts are private, loopback or link-local "
                       "addresses; if these hosts are yours, pass --allow-private-network (config: "
                       "`allow_private_network: true`)")
        elif blocked:
            out.append(f"{blocked} of {rows} downloads were refused as private-network addresses (status "
                       "blocked_private_network); pass --allow-private-network if those hosts are yours")
        if rows and status.get("success", 0) == 0 and blocked != rows:
            worst = max(status.items(), key=lambda kv: kv[1])[0] if status else "unknown"
            out.append(f"no image was downloaded (most rows: {worst}); see the `status` and `error_message` columns: "
                       "fairsift sql RUN \"select status, error_message, count(*) from shards group by all\"")
    elif stage == "score":
        if not counts.get("scored") and not counts.get("rows"):
            out.append("nothing was scored: shards/ has no successfully downloaded image; check the download "
                       "summary (a blocked download needs --allow-private-network)")
        elif not counts.get("scored"):
            out.append(f"nothing was scored: none of the {counts.get('rows')} downloaded images could be decoded; "
                       "see shards' error_message and the score stage's log")
        elif counts.get("failed"):
            out.append(f"{counts['failed']} images could not be scored (undecodable); they have no clip_score and "
                       "clip-score filter steps drop them")
    elif stage == "filter":
        out += _filter_warnings(counts)
    elif stage == "export" and counts.get("rows") == 0:
        out.append("the corpus is empty: the filter kept 0 rows (see the filter summary)")
    return out


def _filter_warnings(counts: dict) -> list[str]:
    out: list[str] = []
    rows, kept = counts.get("rows"), counts.get("kept")
    steps = counts.get("steps") if isinstance(counts.get("steps"), dict) else {}
    if rows and kept == 0:
        firsts = {name: int(v.get("dropped_first", 0)) for name, v in steps.items() if isinstance(v, dict)}
        worst = max(firsts.items(), key=lambda kv: kv[1]) if firsts else None
        hint = f"; most rows were dropped first by `{worst[0]}` ({worst[1]} of {rows})" if worst and worst[1] else ""
        out.append(f"the filter kept 0 of {rows} rows{hint}. See why: fairsift sql RUN "
                   "\"select dropped_by, reason_code, count(*) from decisions group by all order by 3 desc\"; "
                   "loosen that step's options in the filter config")
    parity = counts.get("group_parity")
    if isinstance(parity, dict) and parity.get("parity_met") is False:
        attribute, min_ratio = parity.get("attribute"), parity.get("min_ratio")
        groups = parity.get("groups") if isinstance(parity.get("groups"), dict) else {}
        below = [(g, v.get("ratio_parity")) for g, v in groups.items()
                 if isinstance(v, dict) and v.get("ratio_parity") is not None and min_ratio is not None
                 and v["ratio_parity"] < min_ratio - 1e-9]
        listed = ", ".join(f"{attribute}={g} ratio {r:.3f}" for g, r in sorted(below, key=lambda x: x[1]))
        out.append(f"group parity unmet: {listed or 'some group'} < min_ratio {min_ratio}; the other groups could "
                   "not give up enough rows at this fraction. Raise the step's `fraction` or lower `min_ratio`")
    return out


# ---- summaries ----

def _plain_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_flat(mapping: dict) -> bool:
    return len(mapping) <= INLINE_ITEMS and not any(isinstance(v, (dict, list, tuple)) for v in mapping.values())


def summary_lines(stage: str, counts: dict) -> list[tuple[int, str, str]]:
    """(indent, label, value) lines of a stage summary: nested counts one level deep, deeper ones on one line."""
    lines: list[tuple[int, str, str]] = []
    for key, value in counts.items():
        if key == "model" and isinstance(value, dict):
            lines.append((0, "model", str(value.get("id", ""))))
        elif key == "steps" and isinstance(value, dict) and stage == "filter":
            lines.append((0, "steps", "passes alone / dropped first"))
            for step, v in value.items():
                if isinstance(v, dict):
                    lines.append((1, step, f"{v.get('pass', '?')} / {v.get('dropped_first', '?')}"))
        elif isinstance(value, dict):
            if not value:
                lines.append((0, key, "none"))
            elif _is_flat(value) and len(value) <= 3:
                lines.append((0, key, ", ".join(f"{k}={_plain_value(v)}" for k, v in value.items())))
            else:
                lines.append((0, key, ""))
                for k, v in value.items():
                    if isinstance(v, dict):
                        text = ", ".join(f"{a}={_plain_value(b)}" for a, b in v.items()) if _is_flat(v) \
                            else f"{len(v)} entries (manifest.json)"
                    else:
                        text = _plain_value(v)
                    lines.append((1, str(k), text))
        elif isinstance(value, (list, tuple)):
            lines.append((0, key, ", ".join(_plain_value(v) for v in value) if len(value) <= INLINE_ITEMS
                          else f"{len(value)} items (manifest.json)"))
        else:
            lines.append((0, key, _plain_value(value)))
    return lines


def print_stage_summary(stage: str, counts: dict, seconds: Optional[float] = None, status: str = "done") -> None:
    warnings = stage_warnings(stage, counts)
    test_model = isinstance(counts.get("model"), dict) and counts["model"].get("is_test_model")
    if test_model:
        warnings.append("CLIP scores come from the tiny TEST model (random init), not real CLIP weights")
    if _json_output:
        record = {"stage": stage, "status": status, "seconds": round(seconds, 3) if seconds is not None else None,
                  "counts": counts, "warnings": warnings}
        sys.stdout.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = summary_lines(stage, counts)
    if console.is_terminal:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="dim")
        table.add_column(justify="left")
        for indent, label, value in lines:
            table.add_row("  " * indent + label, value)
        console.print(f"[bold green]{stage}[/] {status}{took}", highlight=False)
        console.print(table, highlight=False)
    else:
        width = max((2 * indent + len(label) for indent, label, _ in lines), default=0)
        text = [f"{stage} {status}{took}"]
        text += [f"  {('  ' * indent + label).ljust(width)}  {value}".rstrip() for indent, label, value in lines]
        console.print(escape("\n".join(text)), highlight=False)
    for warning in warnings:
        print_warning(warning)


def print_stage_skipped(stage: str, why: str, counts: Optional[dict] = None) -> None:
    """A stage the runner did not run (its outputs are current): one line, or a JSON object with status skipped."""
    if _json_output:
        sys.stdout.write(json.dumps({"stage": stage, "status": "skipped", "why": why, "counts": counts or {},
                                     "warnings": []}, default=str) + "\n")
        sys.stdout.flush()
        return
    console.print(f"[dim]{escape(stage)}: {escape(why)}, skipped[/]", highlight=False)


def print_warning(message: str) -> None:
    console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)


def funnel_table(rows: list[tuple[str, int, str]]) -> Table:
    """rows: (step, rows remaining after it, note)."""
    table = Table(title="fairsift funnel", show_lines=False)
    table.add_column("step")
    table.add_column("rows", justify="right")
    table.add_column("% of start", justify="right")
    table.add_column("note")
    start = rows[0][1] if rows and rows[0][1] else None
    for step, n, note in rows:
        pct = f"{100 * n / start:.1f}%" if start else ""
        table.add_row(step, f"{n:,}", pct, note)
    return table
