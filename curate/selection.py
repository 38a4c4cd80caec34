"""The ONE top-fraction rule of fairsift: which rows "the CLIP top fraction f" keeps, everywhere.

The filter's `clip_top_fraction` step, the audit's threshold sweep and the dashboard's what-if slider all keep the
same set of rows for the same scores and fraction, because they all use this rule:

1. n = the rows with a score (null and NaN scores are not scored rows and are never kept);
2. k = round(f · n) to the nearest row, halves rounded up, at least one row when n > 0 and f > 0, at most n.
   f is read to 1e-9 (f_ppb = floor(f · 10^9 + 1/2)) and k = floor((n · f_ppb + 5·10^8) / 10^9) in integer
   arithmetic, so Python and SQL agree exactly for any n (no floating-point k);
3. rows are ranked by score, highest first, and equal scores by uid in ascending (byte) order; the first k are kept.

The result of the rule is a *boundary* (threshold score t = the lowest kept score, boundary uid u = the uid of the
last kept row): a row is kept iff score > t, or score = t and uid <= u. A boundary is all a part needs, so the
filter can compute it once over the whole run (`boundary_sql` over a DuckDB view of every clip part: an exact
global quantile computed out of core) and then decide each part on its own with `kept_by_boundary`.
When rows tied at t are split by uid, `Boundary.ties_cut_by_uid` says so and by how many rows.

Here: the numpy implementation (`top_fraction_count`, `ranking`, `select_top_k`, `boundary_from_scores`,
`kept_by_boundary`) and the SQL text of the same rule (`K_SQL`, `boundary_sql`, `kept_sql`, `whatif_sql`).
The dashboard may not import curate: it reads a copy of the SQL as plain data, `dashboards/top_fraction_rule.json`,
written by `python -m curate.selection` (tests/test_selection.py keeps the copy equal and checks that numpy and
SQL keep the same set over many n, f and tie patterns).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

PPB = 1_000_000_000
RULE_TEXT = ("k = round(f·n) half up (f to 1e-9), at least 1 when n > 0, at most n; "
             "rank by clip_score descending, ties by uid ascending; keep the first k")


def fraction_ppb(fraction: float) -> int:
    """f in parts per billion, the resolution at which the rule reads a fraction."""
    f = float(fraction)
    if not (0.0 <= f <= 1.0) or math.isnan(f):
        raise ValueError(f"a top fraction must lie in [0, 1], got {fraction!r}")
    return int(math.floor(f * 1e9 + 0.5))


def top_fraction_count(n: int, fraction: float) -> int:
    """k of the rule: rows kept out of n scored rows for the top `fraction`."""
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ppb = fraction_ppb(fraction)
    k = (n * ppb + PPB // 2) // PPB
    return min(n, max(1 if n > 0 and ppb > 0 else 0, k))


def ranking(scores: np.ndarray, uids: np.ndarray) -> np.ndarray:
    """Indices of the scored rows from best to worst: score descending, equal scores by uid ascending.
    NaN scores are left out."""
    scores = np.asarray(scores, dtype=np.float64)
    uids = np.asarray(uids).astype(str)
    scored = np.flatnonzero(~np.isnan(scores))
    order = np.lexsort((uids[scored], -scores[scored]))
    return scored[order]


def select_top_k(scores: np.ndarray, uids: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k best rows by the rule's ranking (NaN scores never kept)."""
    kept = np.zeros(len(scores), dtype=bool)
    kept[ranking(scores, uids)[: max(int(k), 0)]] = True
    return kept


@dataclass(frozen=True)
class Boundary:
    """What the rule keeps, as a boundary: kept iff score > threshold or (score == threshold and uid <= uid)."""

    n: int  # scored rows
    k: int  # rows kept
    threshold: Optional[float]  # the lowest kept score (None when nothing is kept)
    uid: Optional[str]  # the uid of the last kept row
    tied: int = 0  # scored rows whose score equals the threshold
    tied_kept: int = 0  # of those, the ones kept (the rest were cut by uid order)

    @property
    def ties_cut_by_uid(self) -> bool:
        return self.tied_kept < self.tied

    def as_dict(self) -> dict:
        return {**asdict(self), "ties_cut_by_uid": self.ties_cut_by_uid}


def boundary_from_scores(scores: np.ndarray, uids: np.ndarray, fraction: float) -> Boundary:
    """The rule's boundary for the top `fraction`, computed in memory."""
    order = ranking(scores, uids)
    k = top_fraction_count(len(order), fraction)
    return boundary_at(np.asarray(scores, dtype=np.float64), np.asarray(uids).astype(str), order, k)


def boundary_at(scores: np.ndarray, uids: np.ndarray, order: np.ndarray, k: int) -> Boundary:
    """The boundary after the first k rows of a ranking (`order` as returned by `ranking`)."""
    n = len(order)
    if k <= 0:
        return Boundary(n=n, k=0, threshold=None, uid=None)
    last = order[k - 1]
    threshold = float(scores[last])
    ranked = scores[order]
    # ranked is descending: the rows tied at the threshold are one contiguous run
    first_tied = int(np.searchsorted(-ranked, -threshold, side="left"))
    end_tied = int(np.searchsorted(-ranked, -threshold, side="right"))
    return Boundary(n=n, k=k, threshold=threshold, uid=str(uids[last]), tied=end_tied - first_tied,
                    tied_kept=k - first_tied)


def kept_by_boundary(scores: np.ndarray, uids: np.ndarray, boundary: Boundary) -> np.ndarray:
    """Apply a boundary to any rows (one part of the run, or all of it): the rule's kept mask."""
    scores = np.asarray(scores, dtype=np.float64)
    if boundary.threshold is None:
        return np.zeros(len(scores), dtype=bool)
    above = scores > boundary.threshold  # False for NaN
    at = scores == boundary.threshold
    if at.any():
        at &= np.asarray(uids).astype(str) <= boundary.uid
    return above | at


# ---- the same rule in SQL (DuckDB) ----
# `$fraction` is a DOUBLE parameter; `n` a BIGINT column. Integer (HUGEINT) arithmetic, as in top_fraction_count.
K_SQL = ("least(n, greatest(case when n > 0 and floor($fraction * 1e9 + 0.5) > 0 then 1 else 0 end, "
         "(n::HUGEINT * floor($fraction * 1e9 + 0.5)::HUGEINT + 500000000) // 1000000000))::BIGINT")

SCORED_SQL = ("select uid, clip_score::DOUBLE as score from {source} "
              "where clip_score is not null and isfinite(clip_score)")


def boundary_sql(source: str = "clip") -> str:
    """One row (n, k, threshold, uid, tied, tied_kept) for the top `$fraction` of `source`, any relation with
    columns uid and clip_score (e.g. a view over every part of signals/clip). One sort, done out of core by DuckDB."""
    return f"""
with scored as ({SCORED_SQL.format(source=source)}),
target as (select n, {K_SQL} as k from (select count(*)::BIGINT as n from scored)),
last_kept as (
    select score, uid from scored order by score desc, uid asc
    limit 1 offset (select greatest(k - 1, 0) from target)
),
boundary as (
    select t.n, t.k, case when t.k > 0 then l.score end as threshold, case when t.k > 0 then l.uid end as uid
    from target t left join last_kept l on true
)
select b.n, b.k, b.threshold, b.uid,
       (select count(*) from scored s where s.score = b.threshold)::BIGINT as tied,
       (select count(*) from scored s where s.score = b.threshold and s.uid <= b.uid)::BIGINT as tied_kept
from boundary b"""


KEPT_PREDICATE = "(score > threshold or (score = threshold and uid <= boundary_uid))"


def kept_sql(source: str = "clip") -> str:
    """Every scored row of `source` with `kept` (boolean) under the rule for the top `$fraction`."""
    return f"""
with b as ({boundary_sql(source)}),
scored as ({SCORED_SQL.format(source=source)})
select s.uid, s.score as clip_score,
       coalesce(s.score > b.threshold or (s.score = b.threshold and s.uid <= b.uid), false) as kept
from scored s, b"""


def whatif_sql(source: str = "clip", groups: str = "groups", column_sql: str = '"gender_terms"') -> str:
    """Per group of `groups`.<column>: scored rows n, rows kept by the rule, inclusion rate. `column_sql` is a
    quoted identifier; rows without a group value are the group '(missing)'."""
    return f"""
with k as ({kept_sql(source)})
select coalesce(cast(g.{column_sql} as varchar), '(missing)') as "group", count(*)::BIGINT as n,
       count(*) filter (where k.kept)::BIGINT as n_kept,
       count(*) filter (where k.kept) / count(*) as inclusion_rate
from k left join {groups} g using (uid)
group by 1 order by n desc, 1"""


def boundary_from_sql(con, fraction: float, source: str = "clip") -> Boundary:
    """The rule's boundary over a DuckDB relation (a view of all clip parts): exact, out of core."""
    fraction_ppb(fraction)  # the same validation as in Python
    n, k, threshold, uid, tied, tied_kept = con.execute(boundary_sql(source), {"fraction": float(fraction)}).fetchall()[0]
    return Boundary(n=int(n), k=int(k), threshold=None if threshold is None else float(threshold),
                    uid=uid, tied=int(tied or 0), tied_kept=int(tied_kept or 0))


def boundaries_from_sql(con, fractions: list[float], source: str = "clip") -> list[Boundary]:
    """The boundaries of several fractions from ONE ranking of `source` (the threshold sweep): k from
    top_fraction_count (equal to K_SQL, tested), then the rows at ranks k picked from a single window sort."""
    scored = SCORED_SQL.format(source=source)
    n = int(con.execute(f"select count(*) from ({scored})").fetchall()[0][0])
    ks = [top_fraction_count(n, f) for f in fractions]
    wanted = sorted({k for k in ks if k > 0})
    # each k-th row out of core (only a window of rows around it is sorted), not one window over every row
    at_rank = {k: kth_best_in(con, f"({scored})", k, n) for k in wanted}
    ties: dict[int, tuple[int, int]] = {}
    if wanted:
        exprs, params = [], []
        for k in wanted:
            t, u = at_rank[k]
            exprs.append("count(*) filter (where score = ?)::BIGINT, count(*) filter (where score = ? and uid <= ?)::BIGINT")
            params += [t, t, u]
        counts = con.execute(f"select {', '.join(exprs)} from ({scored})", params).fetchall()[0]
        ties = {k: (int(counts[2 * i]), int(counts[2 * i + 1])) for i, k in enumerate(wanted)}
    out = []
    for k in ks:
        if k == 0:
            out.append(Boundary(n=n, k=0, threshold=None, uid=None))
        else:
            t, u = at_rank[k]
            out.append(Boundary(n=n, k=k, threshold=t, uid=u, tied=ties[k][0], tied_kept=ties[k][1]))
    return out


def kth_best_in(con, rows: str, k: int, n: int, *, min_window: int = 1000,
                window_fraction: float = 0.001) -> tuple[float, str]:
    """The k-th best (score, uid) of the relation `rows` (columns score, uid; n rows; 1 <= k <= n) in the rule's order
    (score desc, uid asc), exactly, in memory bounded by a window of rows around it, not by n.

    A t-digest estimate (`approx_quantile`, bounded memory) gives the scores at ranks k - w and k + w; one counting
    pass finds a, the rows above the window, and m, the rows inside. When a < k <= a + m, only the m rows are sorted
    to find the k-th; otherwise the window is widened x8 (the last resort is every row). w = max(min_window,
    n x window_fraction). The filter's global cut and the audit's sweep both use it (curate.filter.global_cut)."""
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} is not a rank of the {n} scored rows")
    half = max(min_window, int(n * window_fraction))
    while True:
        if 2 * half >= n:
            return _kth_in(con, rows, k, offset_above=0, where="TRUE")
        # quantile q of ascending scores: the k-th best is at ascending rank n - k + 1
        q_low, q_high = max(0.0, (n - k - half) / n), min(1.0, (n - k + half) / n)
        low, high = con.execute(f"SELECT approx_quantile(score, [{q_low}, {q_high}]) FROM {rows}").fetchall()[0][0]
        above, inside = con.execute(
            f"SELECT count(*) FILTER (WHERE score > {float(high)!r}), "
            f"count(*) FILTER (WHERE score >= {float(low)!r} AND score <= {float(high)!r}) FROM {rows}"
        ).fetchall()[0]
        if above < k <= above + inside:
            where = f"score >= {float(low)!r} AND score <= {float(high)!r}"
            return _kth_in(con, rows, k, offset_above=int(above), where=where)
        half *= 8


def _kth_in(con, rows: str, k: int, offset_above: int, where: str) -> tuple[float, str]:
    score, uid = con.execute(f"SELECT score, uid FROM {rows} WHERE {where} ORDER BY score DESC, uid ASC "
                             f"LIMIT 1 OFFSET {k - offset_above - 1}").fetchall()[0]
    return float(score), str(uid)


def plain_rule() -> dict:
    """The rule's SQL as plain data, for the dashboard (which may not import curate)."""
    return {"rule": RULE_TEXT, "whatif_sql": whatif_sql("clip", "groups", "{column}"),
            "parameters": {"fraction": "DOUBLE in [0, 1]", "{column}": "a quoted column of groups"}}


if __name__ == "__main__":
    json.dump(plain_rule(), sys.stdout, indent=1)
    sys.stdout.write("\n")
