"""Every query the dashboard makes, over DuckDB views of a run folder's Parquet tables.

Aggregation and paging happen in SQL; only small results reach pandas. The dashboard never imports curate or audit:
the run folder's layout (ARCHITECTURE.md) is the interface.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import duckdb
import pandas as pd

# the run folder's layout, as plain data copied from curate.layout (the dashboard never imports curate)
_LAYOUT = json.loads((Path(__file__).resolve().parent / "run_layout.json").read_text(encoding="utf-8"))
VIEWS: dict[str, str] = _LAYOUT["tables"]  # view name -> path inside the run folder (part folder or one file)
CREATED_BY: dict[str, str] = _LAYOUT["created_by"]
AUDIT_CREATED_BY = "fairsift audit"
PROBE_CREATED_BY = "fairsift probe --out RUN/probes ..."
NON_ATTRIBUTE_COLUMNS = {"uid", "language_prob", "country_source", "caption_country", "url_cctld_country",
                         "page_cctld_country", "caption_countries", "subregion"}


class MissingData(LookupError):
    """A table the page needs does not exist; the message says which command creates it."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class RunData:
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise MissingData(f"run folder not found: {self.run_dir}")
        self.con = duckdb.connect()
        self.views: set[str] = set()
        for name, rel in VIEWS.items():
            path = self.run_dir / rel
            files = [path] if path.suffix == ".parquet" and path.is_file() else sorted(path.glob("part-*.parquet")) \
                if path.is_dir() else []
            if files:
                paths = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in files) + "]"
                self.con.execute(f"create view {name} as select * from read_parquet({paths}, union_by_name=true)")
                self.views.add(name)
        self.audit_dir = self.run_dir / "audit"

    # ---- plumbing ----
    def has(self, view: str) -> bool:
        return view in self.views

    def require(self, *views: str) -> None:
        for v in views:
            if v not in self.views:
                raise MissingData(f"no `{v}` table in {self.run_dir} yet — create it with `{CREATED_BY[v]}`")

    def df(self, sql: str, params: Optional[list] = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).fetch_df()

    def columns(self, view: str) -> list[str]:
        return [r[0] for r in self.con.execute(f"describe {view}").fetchall()] if self.has(view) else []

    def audit_table(self, name: str) -> pd.DataFrame:
        path = self.audit_dir / f"{name}.parquet"
        if not path.is_file():
            raise MissingData(f"no audit table `{name}` in {self.run_dir} yet — create it with `{AUDIT_CREATED_BY}`")
        return self.df("select * from read_parquet(?)", [str(path)])

    def probe_tables(self) -> dict[str, pd.DataFrame]:
        out = {}
        for folder in (self.audit_dir, self.run_dir / "probes"):
            if folder.is_dir():
                for p in sorted(folder.glob("probe_*.parquet")):
                    out[p.stem] = self.df("select * from read_parquet(?)", [str(p)])
        return out

    # ---- overview ----
    def manifest(self) -> dict:
        path = self.run_dir / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def status_counts(self) -> pd.DataFrame:
        self.require("shards")
        return self.df("select status, count(*) as n from shards group by 1 order by n desc")

    def step_names(self) -> list[str]:
        return [c.removeprefix("pass_") for c in self.columns("decisions") if c.startswith("pass_")]

    def funnel(self) -> pd.DataFrame:
        rows = []
        if self.has("pairs"):
            rows.append(("pairs", self.df("select count(*) n from pairs")["n"][0]))
        if self.has("decisions"):
            steps = self.step_names()
            # one scan: cumulative AND of the pass columns, counted per step
            exprs, cond = [], []
            for s in steps:
                cond.append(f"coalesce({_q('pass_' + s)}, false)")
                exprs.append(f"count(*) filter (where {' and '.join(cond)}) as {_q(s)}")
            counts = self.df(f"select {', '.join(exprs)} from decisions").iloc[0]
            rows += [(s, int(counts[s])) for s in steps]
        if self.has("corpus"):
            rows.append(("corpus", self.df("select count(*) n from corpus")["n"][0]))
        d = pd.DataFrame(rows, columns=["step", "rows"])
        if not d.empty:
            d["share_of_start"] = d["rows"] / max(int(d["rows"].iloc[0]), 1)
        return d

    def dropped_by(self) -> pd.DataFrame:
        self.require("decisions")
        return self.df("select coalesce(dropped_by, '(kept)') as dropped_by, count(*) n from decisions group by 1 "
                       "order by n desc")

    # ---- samples ----
    def group_attributes(self) -> list[str]:
        return [c for c in self.columns("groups") if c not in NON_ATTRIBUTE_COLUMNS]

    def _sample_where(self, dropped_by: Optional[str], reason: str, attribute: Optional[str], group: Optional[str],
                      score_range: Optional[tuple[float, float]], text: str,
                      groups: Optional[dict[str, list[str]]] = None) -> tuple[list[str], str, list]:
        """The joins a filter needs (only those), its WHERE clause and parameters. `groups` selects several groups
        at once: {attribute: [group, ...]}, any listed group of an attribute, every attribute listed."""
        joins, where, params = [], ["true"], []
        if (dropped_by or reason) and self.has("decisions"):
            joins.append("join decisions k using (uid)")
            if dropped_by == "(kept)":
                where.append("k.kept")
            elif dropped_by:
                where.append("k.dropped_by = ?")
                params.append(dropped_by)
            if reason:
                where.append("k.reason ilike ?")
                params.append(f"%{reason}%")
        wanted = {a: list(v) for a, v in (groups or {}).items() if v}
        if attribute and group is not None:
            wanted.setdefault(attribute, []).append(group)
        wanted = {a: v for a, v in wanted.items() if a in self.group_attributes()}
        if wanted:
            joins.append("join groups g using (uid)")
            for attr, values in wanted.items():
                where.append(f"cast(g.{_q(attr)} as varchar) in ({', '.join('?' * len(values))})")
                params += [str(v) for v in values]
        if score_range and self.has("clip"):
            joins.append("join clip c using (uid)")
            where.append("c.clip_score between ? and ?")
            params += [float(score_range[0]), float(score_range[1])]
        if text:
            where.append("(s.caption ilike ? or s.url ilike ?)")
            params += [f"%{text}%", f"%{text}%"]
        return joins, " and ".join(where), params

    def samples(self, *, page: int = 0, page_size: int = 24, dropped_by: Optional[str] = None, reason: str = "",
                attribute: Optional[str] = None, group: Optional[str] = None,
                score_range: Optional[tuple[float, float]] = None, text: str = "",
                groups: Optional[dict[str, list[str]]] = None) -> tuple[pd.DataFrame, int]:
        """One page of samples (metadata only) and the total count matching the filters.

        The page's uids are found first, joining only the tables the filters need; details are then looked up for
        those few uids, so a page costs a scan of the filter columns, not a join of every table.
        """
        self.require("shards")
        joins, where, params = self._sample_where(dropped_by, reason, attribute, group, score_range, text, groups)
        frm = " ".join(["shards s"] + joins)
        total = int(self.df(f"select count(*) n from {frm} where {where}", params)["n"][0])
        uids = list(self.df(f"select s.uid from {frm} where {where} order by s.uid limit ? offset ?",
                            params + [int(page_size), int(page) * int(page_size)])["uid"])
        cols = ["s.uid", "s.url", "s.caption", "s.status", "s.width", "s.height"]
        detail = "(select * from shards where uid in (select unnest($1))) s"
        for view, alias, names in (("clip", "c", ["clip_score"]), ("dedup", "d", ["dup_of", "dup_kind"]),
                                   ("decisions", "k", ["kept", "dropped_by", "reason"])):
            if self.has(view):
                detail += f" left join (select * from {view} where uid in (select unnest($1))) {alias} using (uid)"
                cols += [f"{alias}.{n}" for n in names]
        page_df = self.df(f"select {', '.join(cols)} from {detail} order by s.uid", [uids])
        return page_df, total

    def sample_uids(self, *, dropped_by: Optional[str] = None, reason: str = "", attribute: Optional[str] = None,
                    group: Optional[str] = None, score_range: Optional[tuple[float, float]] = None, text: str = "",
                    groups: Optional[dict[str, list[str]]] = None) -> pd.DataFrame:
        """Every uid matching the Samples filters (the selection a user downloads), in uid order."""
        self.require("shards")
        joins, where, params = self._sample_where(dropped_by, reason, attribute, group, score_range, text, groups)
        return self.df(f"select s.uid from {' '.join(['shards s'] + joins)} where {where} order by s.uid", params)

    def images(self, uids: list[str]) -> dict[str, bytes]:
        if not uids:
            return {}
        self.require("shards")
        d = self.df("select uid, image from shards where uid in (select unnest(?)) and image is not null", [list(uids)])
        return {u: bytes(b) for u, b in zip(d["uid"], d["image"])}

    def dup_cluster(self, uid: str) -> pd.DataFrame:
        """The uid's duplicate cluster: its representative and every row pointing at it."""
        self.require("dedup", "shards")
        rep = self.df("select coalesce(dup_of, uid) r from dedup where uid = ?", [uid])
        if rep.empty:
            return rep
        root = rep["r"][0]
        return self.df("select d.uid, d.dup_of, d.dup_kind, s.url, s.caption from dedup d join shards s using (uid) "
                       "where d.uid = ? or d.dup_of = ? order by d.dup_of nulls first, d.uid", [root, root])

    def clusters(self, limit: int = 50) -> pd.DataFrame:
        self.require("dedup")
        return self.df("select dup_of as representative, count(*) + 1 as size, string_agg(distinct dup_kind, ',') kinds "
                       "from dedup where dup_of is not null group by 1 "
                       "order by size desc, representative limit ?", [limit])

    def score_bounds(self) -> tuple[float, float]:
        if not self.has("clip"):
            return (0.0, 1.0)
        d = self.df("select min(clip_score) lo, max(clip_score) hi from clip")
        lo, hi = d["lo"][0], d["hi"][0]
        return (float(lo) if pd.notna(lo) else 0.0, float(hi) if pd.notna(hi) else 1.0)

    def groups_of(self, attribute: str) -> list[str]:
        if attribute not in self.group_attributes():
            return []
        d = self.df(f"select distinct cast({_q(attribute)} as varchar) g from groups where {_q(attribute)} is not null "
                    "order by 1")
        return list(d["g"])

    # ---- filter impact: what-if ----
    def whatif(self, fraction: float, attribute: str) -> pd.DataFrame:
        """Inclusion rate per group if only the CLIP top `fraction` were kept, computed live over clip + groups."""
        self.require("clip", "groups")
        if attribute not in self.group_attributes():
            raise MissingData(f"attribute {attribute!r} is not in the groups table")
        return self.df(
            f"""with scored as (select uid, clip_score from clip where clip_score is not null),
                    cut as (select quantile_disc(clip_score, 1 - ?) thr from scored)
                select cast(g.{_q(attribute)} as varchar) as "group", count(*) as n,
                       avg(case when s.clip_score >= cut.thr then 1.0 else 0.0 end) as inclusion_rate
                from scored s join groups g using (uid), cut
                group by 1 order by n desc""", [float(min(max(fraction, 0.0), 1.0))]
        ).assign(overall=lambda d: (d["inclusion_rate"] * d["n"]).sum() / max(d["n"].sum(), 1)) \
         .assign(ratio=lambda d: d["inclusion_rate"] / d["overall"].where(d["overall"] > 0))

    # ---- geography ----
    def country_table(self) -> pd.DataFrame:
        self.require("groups")
        cols = self.columns("groups")
        if "country" not in cols:
            raise MissingData("the groups table has no country column — rerun `fairsift audit`")
        extra = ", any_value(region) region" if "region" in cols else ""
        extra += ", any_value(income_group) income_group" if "income_group" in cols else ""
        src = ", count(*) filter (where country_source = 'caption') from_caption, count(*) filter (where " \
              "country_source = 'cctld') from_cctld" if "country_source" in cols else ""
        return self.df(f"select country, count(*) n, count(*) / (select count(*) from groups) share{extra}{src} "
                       "from groups where country is not null group by country order by n desc")
