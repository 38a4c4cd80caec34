"""Every query the dashboard makes, over DuckDB views of a run folder's Parquet tables.

Aggregation and paging happen in SQL; only small results reach pandas. The dashboard never imports curate or audit:
the run folder's layout (ARCHITECTURE.md) is the interface.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Optional

import duckdb
import pandas as pd

# the run folder's layout, as plain data copied from curate.layout (the dashboard never imports curate)
_LAYOUT = json.loads((Path(__file__).resolve().parent / "run_layout.json").read_text(encoding="utf-8"))
VIEWS: dict[str, str] = _LAYOUT["tables"]  # view name -> path inside the run folder (part folder or one file)
CREATED_BY: dict[str, str] = _LAYOUT["created_by"]
# the one top-fraction rule's SQL, as plain data copied from curate.selection (tests/test_selection.py keeps it equal)
TOP_FRACTION_RULE = json.loads((Path(__file__).resolve().parent / "top_fraction_rule.json").read_text(encoding="utf-8"))
AUDIT_CREATED_BY = "fairsift audit"
PROBE_CREATED_BY = "fairsift probe --out RUN/probes ..."
NON_ATTRIBUTE_COLUMNS = {"uid", "language_prob", "country_source", "caption_country", "url_cctld_country",
                         "page_cctld_country", "caption_countries", "subregion"}


class MissingData(LookupError):
    """A table the page needs does not exist; the message says which command creates it."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _safe_name(stem: str) -> str:
    """A file stem as a view name that needs no quoting (as curate.layout.view_name does)."""
    return re.sub(r"\W", "_", stem)


class RunData:
    """One run folder seen through DuckDB views, read-only.

    The views are made once; then external access is switched off with the run's Parquet files as the only allowed
    paths and the configuration locked, so no query of the dashboard can read or write anything else. Each thread
    (Streamlit runs every browser session in its own) gets its own cursor on the one database.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir).resolve()
        if not self.run_dir.is_dir():
            raise MissingData(f"run folder not found: {self.run_dir}")
        self.audit_dir = self.run_dir / _LAYOUT["audit_dir"]
        self.probes_dir = self.run_dir / _LAYOUT["probes_dir"]
        found: dict[str, list[Path]] = {}
        for name, rel in VIEWS.items():
            path = self.run_dir / rel
            files = [path] if path.suffix == ".parquet" and path.is_file() else sorted(path.glob("part-*.parquet")) \
                if path.is_dir() else []
            if files:
                found[name] = files
        for folder, prefix in ((self.audit_dir, "audit_"), (self.probes_dir, "probe_")):
            for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
                stem = _safe_name(path.stem)
                found[stem if stem.startswith(prefix) else prefix + stem] = [path]
        # a part file that is a symlink out of the run folder is left out, never read
        found = {k: [f.resolve() for f in v] for k, v in found.items()
                 if all(f.resolve().is_relative_to(self.run_dir) for f in v)}
        self._db = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        self._db.execute("set allowed_paths = ?", [sorted({str(f) for files in found.values() for f in files})])
        for name, files in found.items():
            paths = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in files) + "]"
            self._db.execute(f"create view {_q(name)} as select * from read_parquet({paths}, union_by_name=true)")
        self._db.execute("set enable_external_access = false")
        self._db.execute("set lock_configuration = true")
        self.views: set[str] = set(found)
        self._files = found
        self._local = threading.local()

    # ---- plumbing ----
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._db.cursor()
        return cursor

    def has(self, view: str) -> bool:
        return view in self.views

    def require(self, *views: str) -> None:
        for v in views:
            if v not in self.views:
                raise MissingData(f"no `{v}` table in {self.run_dir} yet — create it with `{CREATED_BY[v]}`")

    def df(self, sql: str, params: Optional[list] = None) -> pd.DataFrame:
        for statement in self.con.extract_statements(sql):
            if statement.type != duckdb.StatementType.SELECT:
                raise PermissionError(f"the dashboard only reads: refused a {statement.type.name} statement")
        return self.con.execute(sql, params or []).fetch_df()

    def columns(self, view: str) -> list[str]:
        return [r[0] for r in self.con.execute(f"describe {_q(view)}").fetchall()] if self.has(view) else []

    def audit_table(self, name: str) -> pd.DataFrame:
        view = "audit_" + _safe_name(name)
        if not self.has(view) or _safe_name(name) != name:
            raise MissingData(f"no audit table `{name}` in {self.run_dir} yet — create it with `{AUDIT_CREATED_BY}`")
        return self.df(f"select * from {_q(view)}")

    def probe_tables(self) -> dict[str, pd.DataFrame]:
        """The probe result tables, probes/probe_*.parquet (also audit/probe_*.parquet, where older runs kept them);
        not the per-image predictions beside them."""
        out = {}
        for view in sorted(self.views, key=lambda v: v.startswith("audit_")):
            stem = self._files[view][0].stem
            folder = self._files[view][0].parent
            if stem.startswith("probe_") and folder in (self.probes_dir.resolve(), self.audit_dir.resolve()):
                out.setdefault(stem, self.df(f"select * from {_q(view)}"))
        return dict(sorted(out.items()))

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
        """Inclusion rate per group if only the CLIP top `fraction` were kept, computed live over clip + groups with
        the SQL of the one top-fraction rule (the filter's and the threshold sweep's: same k, ties by uid)."""
        self.require("clip", "groups")
        if attribute not in self.group_attributes():
            raise MissingData(f"attribute {attribute!r} is not in the groups table")
        sql = TOP_FRACTION_RULE["whatif_sql"].replace("{column}", _q(attribute))
        d = self.con.execute(sql, {"fraction": float(min(max(fraction, 0.0), 1.0))}).fetch_df()
        overall = d["n_kept"].sum() / max(int(d["n"].sum()), 1)
        return d.assign(overall=overall, ratio=d["inclusion_rate"] / overall if overall > 0 else float("nan"),
                        ratio_to_max=d["inclusion_rate"] / d["inclusion_rate"].max()
                        if d["inclusion_rate"].max() > 0 else float("nan"))

    # ---- geography ----
    def populations(self) -> list[str]:
        """The populations shares can be taken over, as composition names them: downloaded, kept (else all pairs)."""
        if self.has("decisions"):
            return ["downloaded", "kept"]
        return ["all pairs"]

    def _population_rows(self, population: str) -> str:
        """SQL of the uids of a population, one row per decisions row, as audit/composition counts them."""
        if population == "kept" and self.has("decisions"):
            return "select uid from decisions where kept"
        if population == "downloaded" and self.has("decisions"):
            has_download = "pass_download" in self.columns("decisions")
            return "select uid from decisions" + (" where pass_download" if has_download else "")
        return "select uid from groups"

    def country_table(self, population: str = "downloaded") -> tuple[pd.DataFrame, int, int]:
        """Per country: rows n and share of the population, with the population's size and its rows without a
        country signal. The denominator is every row of the population, countries missing included: the same as
        audit/composition (where those rows are the group '(missing)'), so both pages show the same shares."""
        self.require("groups")
        cols = self.columns("groups")
        if "country" not in cols:
            raise MissingData("the groups table has no country column — rerun `fairsift audit`")
        extra = ", any_value(g.region) region" if "region" in cols else ""
        extra += ", any_value(g.income_group) income_group" if "income_group" in cols else ""
        src = ", count(*) filter (where g.country_source = 'caption') from_caption, count(*) filter (where " \
              "g.country_source = 'cctld') from_cctld" if "country_source" in cols else ""
        # groups holds one row per uid; the population may repeat a uid (one row per shards row), as composition does
        rows = f"(select p.uid, gg.* exclude (uid) from ({self._population_rows(population)}) p " \
               f"left join (select * from groups qualify row_number() over (partition by uid) = 1) gg using (uid)) g"
        totals = self.df(f"select count(*) total, count(*) filter (where g.country is null) missing from {rows}")
        total, missing = int(totals["total"][0]), int(totals["missing"][0])
        table = self.df(f"select g.country, count(*) n, count(*) / ? share{extra}{src} from {rows} "
                        "where g.country is not null group by g.country order by n desc, g.country", [max(total, 1)])
        if population != "downloaded":
            # as composition does: a country a filter removed entirely stays, with n = 0
            every, _, _ = self.country_table("downloaded")
            gone = every[~every["country"].isin(table["country"])].copy()
            if not gone.empty:
                for col in gone.columns:
                    if col in ("n", "share", "from_caption", "from_cctld"):
                        gone[col] = 0
                table = pd.concat([table, gone[table.columns]], ignore_index=True)
        return table, total, missing
