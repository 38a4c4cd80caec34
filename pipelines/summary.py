"""Terminal output of stages: a one-line summary per stage and the funnel table at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def _flat(counts: dict) -> list[tuple[str, object]]:
    items = []
    for key, value in counts.items():
        if isinstance(value, dict):
            if key == "model":
                items.append((key, value.get("id", value)))
                if value.get("is_test_model"):
                    items.append(("WARNING", "scores come from the tiny TEST model, not real CLIP weights"))
            else:
                items.append((key, ", ".join(f"{k}={v}" for k, v in value.items())))
        elif not isinstance(value, (list, tuple)):
            items.append((key, value))
    return items


def print_stage_summary(stage: str, counts: dict) -> None:
    parts = [f"{k}={v}" for k, v in _flat(counts) if k != "WARNING"]
    console.print(f"[bold green]{stage}[/] done: " + ", ".join(parts), highlight=False)
    if any(k == "WARNING" for k, _ in _flat(counts)):
        console.print("[bold yellow]WARNING: CLIP scores come from the tiny TEST model (random-init), not real weights[/]")


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
