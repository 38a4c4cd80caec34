"""Per-group metrics with n and 95% CIs, as long-format audit rows.

Values and n come from fairlearn's MetricFrame (metrics: sklearn's accuracy_score, fairlearn's selection_rate).
Every metric here is a rate (the mean of a per-row 0/1 outcome), so its CI is the Clopper-Pearson interval of the
audit tables (audit.stats.proportion_interval): exact coverage at every n, never zero width, also at 0/n and n/n
(a percentile bootstrap said [0, 0] for 0 crime labels in 100 images). The fairness differences (max - min over
groups) are no rate: they keep a bootstrap, MetricFrame's whole-dataset resampling drawn as one multinomial over
(group x y_true x y_pred) cells, seeded by the attribute's and metric's names.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    selection_rate,
)
from sklearn.metrics import accuracy_score

from audit.stats import percentile_interval, proportion_interval, stream_rng

ALL_GROUP = "all"


@dataclass(frozen=True)
class RowRate:
    """A metric that is the mean of a per-row 0/1 outcome."""

    name: str
    fairlearn_metric: Callable[[Any, Any], float]  # what MetricFrame computes per group
    outcome: Callable[[np.ndarray, np.ndarray], np.ndarray]  # the same thing per row, for the bootstrap


def accuracy(name: str = "accuracy") -> RowRate:
    return RowRate(name, accuracy_score, lambda y_true, y_pred: y_true == y_pred)


def rate_of(name: str, target: Any) -> RowRate:
    """The share of predictions equal to `target` (fairlearn's selection_rate with that positive label)."""
    return RowRate(name, partial(selection_rate, pos_label=target), lambda y_true, y_pred: y_pred == target)


def seed_stream(seed: int, *names: Any) -> np.random.Generator:
    """An independent generator per table cell family, so adding one metric never changes another's CIs."""
    return stream_rng(seed, *[zlib.crc32(str(n).encode()) for n in names])


def group_rows(y_true, y_pred, sensitive: pd.Series, metrics: list[RowRate], n_boot: int, seed: int,
               **extras: Any) -> list[dict]:
    """Rows (attribute = sensitive.name) for every group and "all", one per metric, with n and 95% CIs.

    Rows whose sensitive value is missing are left out (their n would belong to no group). `n_boot` and `seed` are
    unused by the rate intervals (exact); they stay in the signature for the callers' uniformity.
    """
    keep = sensitive.notna().to_numpy()
    y_true = np.asarray(y_true, dtype=object)[keep]
    y_pred = np.asarray(y_pred, dtype=object)[keep]
    sensitive = sensitive[keep].astype(str).reset_index(drop=True)
    if len(sensitive) == 0:
        return []
    frame = MetricFrame(metrics={**{m.name: m.fairlearn_metric for m in metrics}, "__n": count},
                        y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    groups = list(frame.by_group.index)
    codes = pd.Categorical(sensitive, categories=groups).codes
    totals = np.bincount(codes, minlength=len(groups))
    rows = []
    for metric in metrics:
        passed = np.bincount(codes, weights=metric.outcome(y_true, y_pred).astype(np.float64),
                             minlength=len(groups)).round().astype(np.int64)
        low, high = proportion_interval(passed, totals)
        all_low, all_high = proportion_interval(np.array([passed.sum()]), np.array([totals.sum()]))
        for i, group in enumerate(groups):
            rows.append({"attribute": sensitive.name, "group": str(group), "n": int(frame.by_group.loc[group, "__n"]),
                         "metric": metric.name, "value": float(frame.by_group.loc[group, metric.name]),
                         "ci_low": float(low[i]), "ci_high": float(high[i]), **extras})
        rows.append({"attribute": sensitive.name, "group": ALL_GROUP, "n": int(frame.overall["__n"]),
                     "metric": metric.name, "value": float(frame.overall[metric.name]),
                     "ci_low": float(all_low[0]), "ci_high": float(all_high[0]), **extras})
    return rows


def _boot_differences(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray, n_groups: int, n_boot: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of the demographic parity and equalized odds differences (whole-dataset resampling,
    drawn as one multinomial over the group x y_true x y_pred cells)."""
    cells = codes * 4 + y_true * 2 + y_pred
    counts = np.bincount(cells, minlength=n_groups * 4).astype(np.float64)
    draws = rng.multinomial(len(codes), counts / counts.sum(), size=n_boot).reshape(n_boot, n_groups, 2, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        selection = draws[:, :, :, 1].sum(axis=2) / draws.sum(axis=(2, 3))
        tpr = draws[:, :, 1, 1] / draws[:, :, 1, :].sum(axis=2)
        fpr = draws[:, :, 0, 1] / draws[:, :, 0, :].sum(axis=2)
        spread = lambda r: np.nanmax(r, axis=1) - np.nanmin(r, axis=1)  # noqa: E731
        return spread(selection), np.fmax(spread(tpr), spread(fpr))


def fairness_difference_rows(y_true, y_pred, sensitive: pd.Series, positive_label: str, n_boot: int, seed: int,
                             **extras: Any) -> list[dict]:
    """fairlearn's demographic_parity_difference and equalized_odds_difference of a binary prediction, with
    bootstrap CIs (percentiles of the same differences over resamples)."""
    keep = sensitive.notna().to_numpy() & pd.notna(np.asarray(y_pred, dtype=object))
    y_true = (np.asarray(y_true, dtype=object)[keep] == positive_label).astype(int)
    y_pred = (np.asarray(y_pred, dtype=object)[keep] == positive_label).astype(int)
    sensitive = sensitive[keep].astype(str).reset_index(drop=True)
    if len(sensitive) == 0:
        return []
    common = {"attribute": sensitive.name, "group": ALL_GROUP, "n": int(len(sensitive)),
              "positive_label": positive_label, **extras}
    dp = demographic_parity_difference(y_true, y_pred, sensitive_features=sensitive)
    eo = equalized_odds_difference(y_true, y_pred, sensitive_features=sensitive)
    groups = sorted(sensitive.unique())
    codes = pd.Categorical(sensitive, categories=groups).codes.astype(np.int64)
    rng = seed_stream(seed, sensitive.name, "fairness_differences", positive_label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a group without positives in a resample: NaN, skipped
        dp_boot, eo_boot = _boot_differences(y_true, y_pred, codes, len(groups), n_boot, rng)
    (dp_low, eo_low), (dp_high, eo_high) = percentile_interval(np.stack([dp_boot, eo_boot], axis=1))
    return [
        {**common, "metric": "demographic_parity_difference", "value": float(dp), "ci_low": float(dp_low),
         "ci_high": float(dp_high)},
        {**common, "metric": "equalized_odds_difference", "value": float(eo), "ci_low": float(eo_low),
         "ci_high": float(eo_high)},
    ]
