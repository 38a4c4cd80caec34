"""What every filter step shares: the result shape (pass/fail per row, reasons, helper columns), the base class
and the number formatting of reasons. Steps and the top-fraction selection both build on it, so neither imports
the other's module."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from curate.filter.context import FilterContext


def fmt(x: float) -> str:
    """Numbers in reasons: short, but enough digits to tell a score from its threshold."""
    return f"{x:.4g}"


@dataclass
class StepResult:
    passed: np.ndarray  # bool per row
    reasons: list[Optional[str]]  # None where the row passes
    helpers: dict[str, list] = field(default_factory=dict)  # extra decisions columns (values, not verdicts)
    thresholds: dict[str, object] = field(default_factory=dict)  # recorded in the stage's counts
    report: dict[str, object] = field(default_factory=dict)  # step-specific counts (e.g. group parity's cost)


def step_result(passed: np.ndarray, reason_of) -> StepResult:
    """reason_of(i) is only called for failing rows, so building messages costs nothing for the rows that pass."""
    passed = np.asarray(passed, dtype=bool)
    reasons = [None if ok else reason_of(i) for i, ok in enumerate(passed)]
    return StepResult(passed=passed, reasons=reasons)


class FilterStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    # tables this step reads; checked before any work so a missing one fails fast with the command that makes it
    needs: ClassVar[tuple[str, ...]] = ()

    def evaluate(self, ctx: FilterContext) -> StepResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, run_dir) -> Optional[dict]:
        """The step's global step, run once over the whole run before any part is decided (a cut over all scores,
        say); its JSON-able result reaches evaluate() as ctx.prepared[self.name]. Most steps need none."""
        return None


def nullable(values: np.ndarray) -> list[Optional[float]]:
    return [None if math.isnan(v) else float(v) for v in values]
