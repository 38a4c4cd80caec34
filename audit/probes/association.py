"""Embedding association test between image groups and word sets: WEAT's effect size (Caliskan et al. 2017) with
image targets as in the iEAT (Steed & Caliskan 2021), across CLIP's image and text towers.

For a target vector w, s(w, A, B) = mean cos(w, a) - mean cos(w, b). The effect size is
(mean_X s - mean_Y s) / std_{X u Y} s (sample std), a Cohen's d. The one-sided p-value is the share of random
relabellings of X u Y into groups of the same sizes whose mean difference is at least the observed one (with the
observed labelling counted, so p > 0). Permutations and the bootstrap CI of the effect size are vectorised numpy.
The p-values of all tests in one run form one family: `p_adjusted` is Holm-corrected across them (family-wise error),
so running the ~6 tests of the prompt file does not multiply false alarms. Each test's random stream is keyed by its
name, so adding a test never changes another's numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.stats import holm, stream_rng

PERMUTATION_CHUNK = 1000


def association_scores(targets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) of every row w of `targets`; all inputs L2-normalised, so a dot product is a cosine."""
    targets = np.asarray(targets, dtype=np.float64)
    return (targets @ np.asarray(a, np.float64).T).mean(axis=1) - (targets @ np.asarray(b, np.float64).T).mean(axis=1)


def effect_size(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    s = association_scores(np.vstack([x, y]), a, b)
    return _effect_from_scores(s[: len(x)], s[len(x):])


def _effect_from_scores(s_x: np.ndarray, s_y: np.ndarray) -> float:
    spread = np.concatenate([s_x, s_y]).std(ddof=1)
    return float((s_x.mean() - s_y.mean()) / spread) if spread > 0 else float("nan")


def permutation_p_value(s_x: np.ndarray, s_y: np.ndarray, n_permutations: int, rng: np.random.Generator) -> float:
    scores = np.concatenate([s_x, s_y])
    n_x, n = len(s_x), len(s_x) + len(s_y)
    observed = s_x.mean() - s_y.mean()
    at_least = 0
    done = 0
    while done < n_permutations:
        m = min(PERMUTATION_CHUNK, n_permutations - done)
        order = rng.permuted(np.broadcast_to(np.arange(n), (m, n)), axis=1)
        shuffled = scores[order]
        diffs = shuffled[:, :n_x].mean(axis=1) - shuffled[:, n_x:].mean(axis=1)
        # a tolerance so that relabellings equal to the observed one up to rounding count as "at least"
        at_least += int(np.count_nonzero(diffs >= observed - 1e-12))
        done += m
    return (at_least + 1) / (n_permutations + 1)


def bootstrap_effect_sizes(s_x: np.ndarray, s_y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Effect sizes of n_boot resamples, X and Y each resampled with replacement at its own size."""
    bx = s_x[rng.integers(0, len(s_x), size=(n_boot, len(s_x)))]
    by = s_y[rng.integers(0, len(s_y), size=(n_boot, len(s_y)))]
    spread = np.concatenate([bx, by], axis=1).std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (bx.mean(axis=1) - by.mean(axis=1)) / spread


def association_rows(image_vectors: np.ndarray, groups: pd.DataFrame, word_vectors: dict[str, np.ndarray],
                     spec: dict, n_boot: int, n_permutations: int, seed: int, **extras) -> list[dict]:
    """One effect-size row and one p-value row per test of the weat prompt file whose groups are present."""
    rows = []
    for index, test in enumerate(spec["tests"]):
        column = groups[test["attribute"]]
        x, y = image_vectors[(column == test["x"]).to_numpy()], image_vectors[(column == test["y"]).to_numpy()]
        if len(x) < 2 or len(y) < 2:
            continue  # an effect size needs a spread; the test is skipped, not reported as 0
        s = association_scores(np.vstack([x, y]), word_vectors[test["a"]], word_vectors[test["b"]])
        s_x, s_y = s[: len(x)], s[len(x):]
        rng = stream_rng(seed, "weat", test["name"])
        value = _effect_from_scores(s_x, s_y)
        low = high = np.nan
        if n_boot > 0:
            boots = bootstrap_effect_sizes(s_x, s_y, n_boot, rng)
            low, high = np.nanquantile(boots, [0.025, 0.975])
        p = permutation_p_value(s_x, s_y, n_permutations, rng)
        common = {"attribute": test["attribute"], "group": f"{test['x']} vs {test['y']}", "n": len(x) + len(y),
                  "test": test["name"], "x_group": test["x"], "y_group": test["y"], "a_set": test["a"],
                  "b_set": test["b"], "n_x": len(x), "n_y": len(y), "n_permutations": n_permutations, **extras}
        rows.append({**common, "metric": "weat_effect_size", "value": value, "ci_low": float(low), "ci_high": float(high)})
        rows.append({**common, "metric": "weat_p_value", "value": p, "ci_low": np.nan, "ci_high": np.nan})
    p_values = [r["value"] for r in rows if r["metric"] == "weat_p_value"]
    adjusted = iter(holm(p_values)) if p_values else iter(())
    by_test = {}
    for r in rows:
        if r["metric"] == "weat_p_value":
            by_test[r["test"]] = float(next(adjusted))
    for r in rows:  # both rows of a test carry its raw and corrected p-value
        r["p_value"] = next(x["value"] for x in rows if x["test"] == r["test"] and x["metric"] == "weat_p_value")
        r["p_adjusted"] = by_test[r["test"]]
        r["correction"] = "holm"
    return rows
