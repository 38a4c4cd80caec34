"""Who is in the corpus: the share of each group, among downloaded rows and in the kept corpus, and how often the
country read from a caption agrees with the country of the image URL's ccTLD.

One denominator per population: a share is the group's rows over ALL rows of that population (`total`, the
'(missing)' group included), so the shares of a population sum to 1. Every group of an attribute appears in every
population, with n = 0 where a filter removed all of its rows. Intervals: Clopper-Pearson (audit.stats).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.counts import Cube
from audit.frame import audit_rows, concat_rows, empty_frame, group_labels
from audit.stats import proportion_interval

COMPOSITION_EXTRA = {"population": "object", "total": "int64", "min_count": "int64", "flag_low_n": "bool"}


def shares_rows(labels: np.ndarray, n: np.ndarray, attribute: str, population: str, min_count: int,
                analysis: str = "composition") -> pd.DataFrame:
    """Share of each group (counts n, in the order of labels) among the population's rows, with 95% CIs."""
    n = np.asarray(n, dtype=np.int64)
    total = int(n.sum())
    low, high = proportion_interval(n, np.full(len(n), total))
    return audit_rows(
        analysis, attribute=attribute, group=np.asarray(labels, dtype=object), n=n, metric="share",
        value=n / total if total else np.full(len(n), np.nan), ci_low=low, ci_high=high,
        population=population, total=total, min_count=int(min_count), flag_low_n=n < min_count,
    )


def group_shares(labels: pd.Series, attribute: str, population: str, min_count: int, analysis: str) -> pd.DataFrame:
    """Share of each group among `labels` (one label per row); groups in name order."""
    counts = labels.value_counts(sort=False).sort_index()
    return shares_rows(counts.index.to_numpy(dtype=object), counts.to_numpy(), attribute, population, min_count,
                       analysis)


def composition_from_cubes(cubes: list[Cube], min_count: int = 30) -> pd.DataFrame:
    """Rows of audit/composition.parquet from the cell cubes: population "downloaded" (pass_download, or every row
    when the filter recorded no download step) and "kept"; every group in both, n = 0 where none is left."""
    rows = []
    for population in ("downloaded", "kept"):
        for cube in cubes:
            labels = cube.labels()
            if population == "kept":
                mask = cube.kept
            else:
                mask = cube.step_bit("download") if "download" in cube.steps else np.ones(len(cube.n), dtype=bool)
            rows.append(shares_rows(labels, cube.per_group(labels, mask), cube.attribute, population, min_count))
    return concat_rows(rows) if rows else empty_frame(COMPOSITION_EXTRA)


def composition(frame: pd.DataFrame, attributes: list[str], populations: dict[str, pd.Series],
                min_count: int = 30) -> pd.DataFrame:
    """Composition of an in-memory frame: per population (name -> boolean row mask) and attribute, each group's
    share; every group of the attribute (over the whole frame) appears in every population."""
    rows = []
    for attribute in attributes:
        all_labels = group_labels(frame[attribute])
        labels = np.array(sorted(all_labels.unique()), dtype=object)
        for population, mask in populations.items():
            counts = all_labels[mask.to_numpy(dtype=bool)].value_counts().reindex(labels, fill_value=0)
            rows.append(shares_rows(labels, counts.to_numpy(), attribute, population, min_count))
    return concat_rows(rows) if rows else empty_frame(COMPOSITION_EXTRA)


def domain_country(frame: pd.DataFrame) -> pd.Series:
    """The country of the publisher's domain: the page's ccTLD when known, else the image URL's (as in signals)."""
    url = frame["url_cctld_country"] if "url_cctld_country" in frame else pd.Series(None, index=frame.index)
    if "page_cctld_country" in frame:
        return frame["page_cctld_country"].where(frame["page_cctld_country"].notna(), url)
    return url


def geo_agreement(frame: pd.DataFrame, mask: pd.Series, population: str = "downloaded",
                  min_count: int = 30) -> pd.DataFrame:
    """Rows of audit/geo_agreement.parquet: among rows where both the caption and the domain's ccTLD (the page's,
    else the image URL's) name a country, the share where they name the same one, overall (group '(all)') and per
    ccTLD country, with Wilson CIs.

    Two independent, noisy geographic signals that agree often make either more credible; low agreement says the
    country column should be read with care.
    """
    if "caption_country" not in frame or not {"url_cctld_country", "page_cctld_country"} & set(frame.columns):
        return empty_frame(GEO_EXTRA)
    rows = frame.loc[mask.to_numpy(dtype=bool)]
    pairs = pd.DataFrame({"a": domain_country(rows), "b": rows["caption_country"]}).dropna()
    counted = pairs.value_counts().reset_index(name="n")
    return geo_agreement_from_pairs(counted, population, min_count)


GEO_EXTRA = {"population": "object", "n_agree": "int64", "min_count": "int64", "flag_low_n": "bool"}


def geo_agreement_from_pairs(pairs: pd.DataFrame, population: str = "downloaded", min_count: int = 30) -> pd.DataFrame:
    """geo_agreement from counts of (a = domain ccTLD country, b = caption country) pairs (audit.counts)."""
    pairs = pairs.dropna(subset=["a", "b"])
    if pairs.empty:
        return empty_frame(GEO_EXTRA)
    agree_rows = pairs["a"] == pairs["b"]
    per = pd.DataFrame({"group": pairs["a"].astype(str), "agree": np.where(agree_rows, pairs["n"], 0),
                        "n": pairs["n"]}).groupby("group", sort=True)[["agree", "n"]].sum()
    groups = np.concatenate([["(all)"], per.index.to_numpy(dtype=object)])
    n_agree = np.concatenate([[per["agree"].sum()], per["agree"].to_numpy()]).astype(np.int64)
    n = np.concatenate([[per["n"].sum()], per["n"].to_numpy()]).astype(np.int64)
    low, high = proportion_interval(n_agree, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = n_agree / n
    return audit_rows(
        "geo_agreement", attribute="cctld_country", group=groups, n=n, metric="caption_agreement_rate",
        value=value, ci_low=low, ci_high=high, population=population, n_agree=n_agree, min_count=int(min_count),
        flag_low_n=n < min_count,
    )
