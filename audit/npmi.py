"""Normalised PMI of two document events, its input checks, edge conventions and intervals over documents.

nPMI(g, w) = log(p(g,w) / (p(g) p(w))) / -log p(g,w), in [-1, 1]: 0 when g and w are independent, +1 when they
always occur together, -1 when they never do (Bouma 2009). Estimated from document counts: n_gw documents with both,
n_g with g, n_w with w, n_docs in all.

Edge conventions (each a limit of the formula or a refusal to guess):
- n_g == 0 or n_w == 0: NaN (an event that never occurs has no association);
- n_gw == 0 (both occur, never together): -1, the limit as p(g,w) -> 0;
- n_gw == n_docs (both events in every document): NaN. The formula is 0/0 there and its limit depends on the path
  (+1 along "always together", 0 along "independent"); with no document lacking either event there is no contrast.
Counts that no set of documents can produce (n_gw > min(n_g, n_w), n_g + n_w - n_gw > n_docs, negative counts)
are an error naming the offending entry, never a number outside [-1, 1].

Intervals: a Bayesian bootstrap over documents. Every document falls into one cell of the events' table (2 x 2 for
one event pair; 4 gender classes x word for the female - male difference); the cell probabilities are drawn from
Dirichlet(counts + 1/2) (Jeffreys' prior), n_boot times, and the 2.5/97.5% percentiles of the statistic over the
draws form the 95% interval. Unlike resampling documents, the draws never collapse at empty cells (a pair never seen
together still gets an interval of non-zero width). Where n_gw == 0 the lower bound is -1, the point estimate.
"""

from __future__ import annotations

import numpy as np

from audit.stats import percentile_interval


def validate_counts(n_gw, n_g, n_w, n_docs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The counts as float arrays (broadcast), or ValueError naming the first entry no documents could produce."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (n_gw, n_g, n_w, n_docs)))
    n_gw, n_g, n_w, n_docs = arrays
    names = ("n_gw", "n_g", "n_w", "n_docs")
    for name, values in zip(names, arrays):
        if np.any(np.isnan(values)) or np.any(values != np.round(values)) or np.any(values < 0):
            i = int(np.flatnonzero((np.isnan(values) | (values != np.round(values)) | (values < 0)).ravel())[0])
            raise ValueError(f"nPMI: {name} must be a non-negative whole count, got {values.ravel()[i]} at index {i}")
    problems = [
        (n_gw > n_g, "n_gw > n_g: more documents with both events than with g"),
        (n_gw > n_w, "n_gw > n_w: more documents with both events than with w"),
        (n_g > n_docs, "n_g > n_docs"),
        (n_w > n_docs, "n_w > n_docs"),
        (n_g + n_w - n_gw > n_docs, "n_g + n_w - n_gw > n_docs: the events cover more documents than exist"),
    ]
    for bad, message in problems:
        if np.any(bad):
            i = int(np.flatnonzero(bad.ravel())[0])
            values = ", ".join(f"{name}={int(a.ravel()[i])}" for name, a in zip(names, arrays))
            raise ValueError(f"nPMI: invalid counts at index {i} ({values}): {message}")
    return n_gw, n_g, n_w, n_docs


def npmi_from_probabilities(p_gw, p_g, p_w) -> np.ndarray:
    """The formula with the edge conventions above, on probabilities (any shape)."""
    p_gw, p_g, p_w = (np.asarray(a, dtype=np.float64) for a in (p_gw, p_g, p_w))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (np.log(p_gw) - np.log(p_g) - np.log(p_w)) / -np.log(p_gw)
    value = np.where(p_gw <= 0, -1.0, value)
    value = np.where(p_gw >= 1, np.nan, value)
    return np.where((p_g <= 0) | (p_w <= 0), np.nan, value)


def npmi(n_gw, n_g, n_w, n_docs) -> np.ndarray:
    """nPMI from document counts, elementwise, with input checks and the documented edge conventions."""
    n_gw, n_g, n_w, n_docs = validate_counts(n_gw, n_g, n_w, n_docs)
    with np.errstate(divide="ignore", invalid="ignore"):
        return npmi_from_probabilities(n_gw / n_docs, n_g / n_docs, n_w / n_docs)


def _dirichlet(counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of cell probabilities: counts (..., cells) -> (n_boot, ..., cells), Dirichlet(counts + 1/2)."""
    gamma = rng.standard_gamma(np.broadcast_to(counts + 0.5, (n_boot, *counts.shape)))
    return gamma / gamma.sum(axis=-1, keepdims=True)


def npmi_interval(n_gw, n_g, n_w, n_docs, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of nPMI per entry (Bayesian bootstrap over documents, see the module docstring)."""
    n_gw, n_g, n_w, n_docs = validate_counts(n_gw, n_g, n_w, n_docs)
    if n_boot <= 0:
        return np.full(n_gw.shape, np.nan), np.full(n_gw.shape, np.nan)
    cells = np.stack([n_gw, n_g - n_gw, n_w - n_gw, n_docs - n_g - n_w + n_gw], axis=-1)
    p = _dirichlet(cells, n_boot, rng)
    draws = npmi_from_probabilities(p[..., 0], p[..., 0] + p[..., 1], p[..., 0] + p[..., 2])
    low, high = percentile_interval(draws)
    return _edges(low, high, n_gw, n_g, n_w, n_docs)


def npmi_difference_interval(class_word: np.ndarray, class_total: np.ndarray, first: tuple[int, ...],
                             second: tuple[int, ...], n_boot: int,
                             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nPMI(first, w) - nPMI(second, w) per word, with a 95% interval, from documents in C exclusive classes.

    class_word: (words, C) documents of each class that contain the word; class_total: (C,) documents per class.
    `first` and `second` are the classes that make up each event (e.g. female = (female, both)), so a document in a
    class of both events counts for both. Returns (value, low, high).
    """
    class_word = np.asarray(class_word, dtype=np.float64)
    class_total = np.asarray(class_total, dtype=np.float64)
    without = class_total[None, :] - class_word
    if np.any(without < 0):
        raise ValueError("nPMI difference: a class has more documents with the word than documents")
    cells = np.concatenate([class_word, without], axis=1)  # (words, 2C): with the word, then without
    c = class_total.shape[0]

    def statistic(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with_w, without_w = p[..., :c], p[..., c:]
        p_w = with_w.sum(axis=-1)
        values = []
        for classes in (first, second):
            idx = list(classes)
            values.append(npmi_from_probabilities(with_w[..., idx].sum(-1), (with_w[..., idx] + without_w[..., idx]).sum(-1), p_w))
        return values[0] - values[1], values[0], values[1]

    n_docs = cells.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        value, v1, v2 = statistic(cells / n_docs)
    if n_boot <= 0:
        return value, np.full(value.shape, np.nan), np.full(value.shape, np.nan)
    draws, _, _ = statistic(_dirichlet(cells, n_boot, rng))
    low, high = percentile_interval(draws)
    # where an nPMI sits at its -1 convention, the interval reaches the value it bounds
    low = np.where(np.isnan(value), np.nan, np.minimum(low, value))
    high = np.where(np.isnan(value), np.nan, np.maximum(high, value))
    return value, low, high


def _edges(low, high, n_gw, n_g, n_w, n_docs):
    undefined = (n_g == 0) | (n_w == 0) | (n_gw == n_docs)
    low = np.where(n_gw == 0, -1.0, low)
    return np.where(undefined, np.nan, low), np.where(undefined, np.nan, high)
