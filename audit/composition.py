"""Who is in the corpus: the share of each group, among downloaded rows and in the kept corpus, and how often the
country read from a caption agrees with the country of the image URL's ccTLD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.frame import audit_rows, concat_rows, empty_frame, group_labels
from audit.stats import wilson_interval

COMPOSITION_EXTRA = {"population": "object", "total": "int64", "flag_low_n": "bool"}


def group_shares(labels: pd.Series, attribute: str, population: str, min_count: int, analysis: str) -> pd.DataFrame:
    """Share of each group among `labels` (one label per row) with a Wilson 95% CI; groups in name order."""
    counts = labels.value_counts(sort=False).sort_index()
    total = int(counts.sum())
    n = counts.to_numpy(dtype=np.int64)
    low, high = wilson_interval(n, total)
    return audit_rows(
        analysis, attribute=attribute, group=counts.index.to_numpy(dtype=object), n=n, metric="share",
        value=n / total if total else np.full(len(n), np.nan), ci_low=low, ci_high=high,
        population=population, total=total, flag_low_n=n < min_count,
    )


def composition(frame: pd.DataFrame, attributes: list[str], populations: dict[str, pd.Series],
                min_count: int = 30) -> pd.DataFrame:
    """Rows of audit/composition.parquet: per population (name -> boolean row mask) and attribute, each group's share.

    Null signals form the group '(missing)', so each population's shares add up to 1 and nothing is hidden.
    """
    rows = []
    for population, mask in populations.items():
        subset = frame.loc[mask.to_numpy(dtype=bool)]
        for attribute in attributes:
            rows.append(group_shares(group_labels(subset[attribute]), attribute, population, min_count, "composition"))
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
    extra = {"population": "object", "n_agree": "int64", "flag_low_n": "bool"}
    if "caption_country" not in frame or not {"url_cctld_country", "page_cctld_country"} & set(frame.columns):
        return empty_frame(extra)
    rows = frame.loc[mask.to_numpy(dtype=bool)]
    subset = pd.DataFrame({"cctld": domain_country(rows), "caption": rows["caption_country"]}).dropna()
    agree = (subset["cctld"] == subset["caption"]).to_numpy()
    per = pd.DataFrame({"group": subset["cctld"].astype(str).to_numpy(), "agree": agree}).groupby(
        "group", sort=True)["agree"].agg(["sum", "size"])
    groups = np.concatenate([["(all)"], per.index.to_numpy(dtype=object)])
    n_agree = np.concatenate([[agree.sum()], per["sum"].to_numpy()]).astype(np.int64)
    n = np.concatenate([[len(agree)], per["size"].to_numpy()]).astype(np.int64)
    low, high = wilson_interval(n_agree, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = n_agree / n
    return audit_rows(
        "geo_agreement", attribute="cctld_country", group=groups, n=n, metric="caption_agreement_rate",
        value=value, ci_low=low, ci_high=high, population=population, n_agree=n_agree, flag_low_n=n < min_count,
    )
