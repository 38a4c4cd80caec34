"""Speed of the filter-impact audit: fairsift's multinomial bootstrap against fairlearn MetricFrame's row bootstrap.

    python benchmarks/bench_audit.py                      # 1M rows x 7 steps x 30 groups, 1000 resamples
    python benchmarks/bench_audit.py --mf-n-boot 20       # a longer MetricFrame measurement
    python benchmarks/bench_audit.py --no-metricframe     # fairsift only

fairsift's bootstrap draws multinomial (group x passed) cell counts, so its cost grows with resamples x groups, not
with rows; MetricFrame resamples the rows themselves. Both are timed on the same rows in the same run: MetricFrame
with a few resamples on ONE step, its per-resample time extrapolated to 1,000 resamples.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.impact import filter_impact, impact_rows  # noqa: E402
from audit.stats import stream_rng  # noqa: E402


class Timer:
    """Wall-clock and this process's CPU seconds: on a shared machine the CPU time is the steadier figure."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} s wall / {self.cpu:.2f} s CPU"


def synthetic_decisions(n_rows: int, n_steps: int, n_groups: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Rows with a `country` attribute of n_groups groups (Zipf-like sizes) and n_steps pass_<step> columns whose
    pass rates vary by group, the first step being the download."""
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, n_groups + 1)
    codes = rng.choice(n_groups, size=n_rows, p=sizes / sizes.sum())
    labels = np.array([f"C{i:02d}" for i in range(n_groups)], dtype=object)
    steps = ["download"] + [f"step{i}" for i in range(1, n_steps)]
    frame = {"uid": np.arange(n_rows).astype(str), "country": labels[codes]}
    for step in steps:
        base = rng.uniform(0.6, 0.97, size=n_groups)
        frame[f"pass_{step}"] = rng.random(n_rows) < base[codes]
    return pd.DataFrame(frame), steps


def time_fairsift_one_step(frame: pd.DataFrame, step: str, n_boot: int, seed: int) -> Timer:
    """One step, one mode, one attribute: what a single MetricFrame call computes."""
    with Timer() as timer:
        _fairsift_one_step(frame, step, n_boot, seed)
    return timer


def _fairsift_one_step(frame: pd.DataFrame, step: str, n_boot: int, seed: int) -> None:
    codes, labels = pd.factorize(frame["country"], sort=True)
    population = frame["pass_download"].to_numpy()
    passes = frame[f"pass_{step}"].to_numpy() & population
    totals = np.bincount(codes[population], minlength=len(labels))
    passed = np.bincount(codes[passes], minlength=len(labels))
    impact_rows(passed, totals, labels.to_numpy(dtype=object), n_boot=n_boot, rng=stream_rng(seed, 0),
                correction="holm", alpha=0.05, min_count=30, step=step, mode="marginal", attribute="country")


def time_metricframe(frame: pd.DataFrame, step: str, n_boot: int, seed: int) -> tuple[Timer, Timer]:
    """MetricFrame's selection_rate by country on the step's marginal population: (seconds without bootstrap,
    seconds with n_boot resamples)."""
    from fairlearn.metrics import MetricFrame, selection_rate

    rows = frame.loc[frame["pass_download"]]
    y = rows[f"pass_{step}"].astype(int).to_numpy()
    groups = rows["country"]
    with Timer() as plain:
        MetricFrame(metrics=selection_rate, y_true=y, y_pred=y, sensitive_features=groups)
    with Timer() as boot:
        MetricFrame(metrics=selection_rate, y_true=y, y_pred=y, sensitive_features=groups, n_boot=n_boot,
                    ci_quantiles=[0.025, 0.975], random_state=seed)
    return plain, boot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=7, help="filter steps, the download included")
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--n-boot", type=int, default=1000, help="fairsift's resamples")
    parser.add_argument("--metricframe", action=argparse.BooleanOptionalAction, default=True,
                        help="also time fairlearn MetricFrame's bootstrap on one step")
    parser.add_argument("--mf-n-boot", type=int, default=5, help="MetricFrame resamples (its time is extrapolated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    frame, steps = synthetic_decisions(args.rows, args.steps, args.groups, args.seed)
    print(f"rows={args.rows:,} steps={args.steps} groups={args.groups} n_boot={args.n_boot} cpus={os.cpu_count()}")

    with Timer() as full:
        table = filter_impact(frame, steps, ["country"], n_boot=args.n_boot, seed=args.seed)
    print(f"fairsift filter_impact, {len(steps)} steps x 2 modes ({len(table)} rows): {full}  (goal <= 30 s)")
    one = time_fairsift_one_step(frame, steps[1], args.n_boot, args.seed)
    print(f"fairsift one step, {args.n_boot} resamples: {one}")

    if args.metricframe:
        plain, boot = time_metricframe(frame, steps[1], args.mf_n_boot, args.seed)
        print(f"MetricFrame one step: {plain} plain; {boot} with {args.mf_n_boot} resamples")
        for clock in ("wall", "cpu"):
            base, total, ours = getattr(plain, clock), getattr(boot, clock), getattr(one, clock)
            per_resample = max(total - base, 0.0) / args.mf_n_boot
            mf_per_1000 = base + 1000 * per_resample
            ours_per_1000 = max(ours, 1e-6) * 1000 / args.n_boot
            print(f"[{clock}] per resample: MetricFrame {per_resample:.2f} s; per 1,000 resamples on one step: "
                  f"MetricFrame ~{mf_per_1000:,.0f} s (extrapolated) vs fairsift {ours_per_1000:.3f} s "
                  f"-> ratio {mf_per_1000 / ours_per_1000:,.0f}x")


if __name__ == "__main__":
    main()
