"""Group signals per pair: RUN/signals/groups/ (gender, age and religion words, country, region, income group,
language).

Every column is a signal read from the caption or the URLs, not an identity: `*_terms` come from caption words
(audit/lexicons.py), `country` from caption place names or, failing those, from the page's or the image's
country-code domain, and `country_source` says which (audit/geo.py). Every pairs row gets a row (the audit joins on
uid), in pairs order and once per uid, so reruns write identical tables.

Speed: the word lexicons run as one RE2 regular expression per side over the whole Arrow column; place names run
in Python only on captions that an RE2 pre-filter of all gazetteer phrases picks out; py3langid runs per caption.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.compute as pc

from audit import geo, lexicons
from curate import tables
from curate.parts import MapParts, PartTask, plan_tasks, remove_stale_outputs, serial_map

BATCH_ROWS = 50_000
GROUPS_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("gender_terms", pa.string()),
        ("age_terms", pa.string()),
        ("religion_terms", pa.string()),
        ("country", pa.string()),
        ("country_source", pa.string()),
        ("caption_country", pa.string()),
        ("caption_countries", pa.list_(pa.string())),
        ("url_cctld_country", pa.string()),
        ("page_cctld_country", pa.string()),
        ("region", pa.string()),
        ("subregion", pa.string()),
        ("income_group", pa.string()),
        ("language", pa.string()),
        ("language_prob", pa.float32()),
    ]
)
COUNTED = ("gender_terms", "age_terms", "religion_terms", "country_source", "income_group", "region")


@lru_cache(maxsize=1)
def _language_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    # normalised probabilities so language_prob can be thresholded; the shared module-level one gives log scores
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


PREFILTER_CHUNK = 300  # phrases per RE2 pattern: Arrow's RE2 refuses one pattern holding the whole gazetteer


@lru_cache(maxsize=1)
def _geo_prefilters() -> tuple[str, ...]:
    """RE2 patterns that together match any gazetteer phrase in folded (lower-case, accent-free) text."""
    phrases = sorted(
        {r"[^a-z]+".join(re.escape(t) for t in key) for key, e in geo.gazetteer().items() if e.rule != "drop"},
        key=lambda p: (-len(p), p),
    )
    chunks = [phrases[i : i + PREFILTER_CHUNK] for i in range(0, len(phrases), PREFILTER_CHUNK)]
    # [^a-z] rather than \\PL (a huge class in RE2): a looser boundary only lets more captions through to geo.py
    return tuple(rf"(?:^|[^a-z])(?:{'|'.join(c)})(?:[^a-z]|$)" for c in chunks)


def _fold(lowered: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(pc.utf8_normalize(lowered, "NFKD"), r"\p{Mn}+", "")


def caption_geo(captions: pa.Array, lowered: pa.Array) -> tuple[list[str | None], list[list[str]]]:
    """First country and all countries mentioned, per caption."""
    folded = _fold(lowered)
    candidates = np.zeros(len(captions), dtype=bool)
    for pattern in _geo_prefilters():
        candidates |= pc.fill_null(pc.match_substring_regex(folded, pattern), False).to_numpy(zero_copy_only=False)
    first: list[str | None] = [None] * len(captions)
    every: list[list[str]] = [[] for _ in range(len(captions))]
    for i in np.flatnonzero(candidates):
        found = geo.caption_countries(captions[i].as_py())
        if found:
            first[i], every[i] = found[0], found
    return first, every


def languages(captions: pa.Array, uids: list[str] | None = None,
              known: dict[str, tuple[str | None, float]] | None = None) -> tuple[list[str | None], list[float | None]]:
    """py3langid's top language and probability per caption; `known` (uid -> verdict, from the filter's signals/lang,
    same identifier and settings) is reused rather than detected twice: language ID is most of this stage's time."""
    ident = _language_identifier()
    langs: list[str | None] = []
    probs: list[float | None] = []
    known = known or {}
    for i, text in enumerate(captions.to_pylist()):
        if uids is not None and uids[i] in known:
            lang, prob = known[uids[i]]
            langs.append(lang)
            probs.append(prob if lang is not None else None)
        elif text and text.strip():
            lang, prob = ident.classify(text)
            langs.append(lang)
            probs.append(prob)
        else:
            langs.append(None)
            probs.append(None)
    return langs, probs


def cctld_countries(urls: pa.Array) -> list[str | None]:
    """geo.cctld_country per URL, computed once per distinct origin (scheme://host:port): hosts repeat a lot."""
    origins = pc.struct_field(pc.extract_regex(urls, r"^(?P<origin>[^/?#]*//[^/?#]*)"), "origin")
    distinct = pc.unique(origins).drop_null()
    by_origin = pa.array([geo.cctld_country(o) for o in distinct.to_pylist()], pa.string())
    found = pc.take(by_origin, pc.index_in(origins, value_set=distinct)).to_pylist()
    # a URL without "//" has no origin; geo.cctld_country still reads such bare hosts ("example.de/x")
    return [f if o is not None else geo.cctld_country(u) for f, o, u in zip(found, origins.to_pylist(), urls.to_pylist())]


def _column(batch: pa.Table, name: str) -> pa.Array:
    if name not in batch.column_names:
        return pa.nulls(batch.num_rows, pa.string())
    return batch.column(name).combine_chunks().cast(pa.string())


def caption_signals(captions: pa.Array, uids: list[str] | None = None,
                    known_languages: dict | None = None) -> dict[str, list]:
    """The caption part of the groups table: word lexicons, caption countries and language."""
    lowered = lexicons.lower(captions)
    first, every = caption_geo(captions, lowered)
    langs, probs = languages(captions, uids, known_languages)
    return {
        "gender_terms": lexicons.gender_terms(lowered).tolist(),
        "age_terms": lexicons.age_terms(lowered).tolist(),
        "religion_terms": lexicons.religion_terms(lowered).tolist(),
        "caption_country": first,
        "caption_countries": every,
        "language": langs,
        "language_prob": probs,
    }


def group_signals(batch: pa.Table, known_languages: dict | None = None) -> pa.Table:
    """Groups rows for a batch of pairs rows (columns uid, url, caption, page_url; page_url may be absent)."""
    captions = _column(batch, "caption")
    cols = caption_signals(captions, _column(batch, "uid").to_pylist(), known_languages)
    url_cc = cctld_countries(_column(batch, "url"))
    page_cc = cctld_countries(_column(batch, "page_url"))
    country, source = [], []
    for cap, page, img in zip(cols["caption_country"], page_cc, url_cc):
        # the caption names what is shown; the page's domain says where the publisher is, the image's is often a CDN
        if cap:
            country.append(cap), source.append("caption")
        elif page or img:
            country.append(page or img), source.append("cctld")
        else:
            country.append(None), source.append(None)
    facts = [geo.country_facts(c) for c in country]
    data = {
        "uid": _column(batch, "uid"),
        **cols,
        "country": country,
        "country_source": source,
        "url_cctld_country": url_cc,
        "page_cctld_country": page_cc,
        "region": [f["region"] for f in facts],
        "subregion": [f["subregion"] for f in facts],
        "income_group": [f["income_group"] for f in facts],
    }
    return pa.Table.from_pydict({f.name: data[f.name] for f in GROUPS_SCHEMA}, schema=GROUPS_SCHEMA)


def _first_row_per_uid(pairs: pa.Table) -> pa.Table:
    """One row per uid, the first in pairs order: the same url and caption found on two pages is one pair here."""
    seen: set[str] = set()
    keep = [i for i, uid in enumerate(pairs.column("uid").to_pylist()) if not (uid in seen or seen.add(uid))]
    return pairs if len(keep) == pairs.num_rows else pairs.take(keep)


def groups_part(task: PartTask) -> dict:
    """pairs part (+ the filter's caption languages for it, when it ran first) -> signals/groups part."""
    pairs = pq.read_table(task.input_paths[0])
    wanted = [c for c in ("uid", "url", "caption", "page_url") if c in pairs.column_names]
    missing = {"uid", "caption"} - set(wanted)
    if missing:
        raise ValueError(f"{task.input_paths[0]}: pairs part lacks columns {sorted(missing)}")
    pairs = _first_row_per_uid(pairs.select(wanted))
    known = _known_languages(task.input_paths[1]) if len(task.inputs) > 1 else {}
    batches = [group_signals(pairs.slice(start, BATCH_ROWS), known) for start in range(0, pairs.num_rows, BATCH_ROWS)]
    task.write(pa.concat_tables(batches) if batches else GROUPS_SCHEMA.empty_table())
    return {"rows": pairs.num_rows}


def build_group_signals(run_dir: str | Path, *, map_parts: MapParts = serial_map) -> dict:
    """Compute signals/groups/ for every pairs row, one groups part per pairs part; returns counts per value of the
    main columns (over the whole table, so a rerun that recomputes nothing reports the same)."""
    run_dir = Path(run_dir)
    pair_parts = tables.list_parts(run_dir, "pairs")
    if not pair_parts:
        raise tables.MissingTableError(run_dir, "pairs")
    lang_dir = tables.table_path(run_dir, "lang")
    items = []
    for path in pair_parts:
        inputs = [f"pairs/{path.name}"]
        if (lang_dir / path.name).is_file():
            inputs.append(str((lang_dir / path.name).relative_to(run_dir)))
        items.append((path.name, inputs, [f"{tables.TABLE_PATHS['groups']}/{path.name}"]))
    todo, _ = plan_tasks("groups", run_dir, items, {"schema": GROUPS_SCHEMA.names})
    map_parts(groups_part, todo, desc="group signals")
    remove_stale_outputs(tables.table_path(run_dir, "groups"), [p.name for p in pair_parts])
    counts = summarise_run(run_dir)
    counts["parts_computed"] = len(todo)
    return counts


def _known_languages(path: Path) -> dict[str, tuple[str | None, float]]:
    """The filter's caption languages of one part: uid -> (language, probability)."""
    lang = pq.read_table(path)
    if not {"uid", "language", "language_prob"} <= set(lang.column_names):
        return {}
    if "detector" in lang.column_names:  # reuse only py3langid's verdicts: the filter defaults to fastText lid.176
        lang = lang.filter(pc.equal(lang.column("detector"), "py3langid"))
    return {u: (l, p) for u, l, p in zip(lang.column("uid").to_pylist(), lang.column("language").to_pylist(),
                                         lang.column("language_prob").to_pylist())}


def summarise_run(run_dir: Path) -> dict:
    """summarise() over every groups part, by DuckDB group-bys rather than one table in memory."""
    files = [str(p) for p in tables.list_parts(run_dir, "groups")]
    out: dict = {}
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW g AS SELECT * FROM read_parquet({tables.sql_file_list(files)}, union_by_name = true)")
        out["rows"] = int(con.execute("SELECT count(*) FROM g").fetchall()[0][0])
        for col in COUNTED:
            found = con.execute(f'SELECT coalesce("{col}", \'null\') AS v, count(*) FROM g GROUP BY v ORDER BY v'
                                ).fetchall()
            out[col] = {v: int(c) for v, c in found}
        top = con.execute("SELECT country, count(*) AS c FROM g WHERE country IS NOT NULL AND country <> '' "
                          "GROUP BY country ORDER BY c DESC, country").fetchall()
        out["countries_found"] = len(top)
        out["top_countries"] = {k: int(v) for k, v in top[:10]}
        langs = con.execute("SELECT language, count(*) AS c FROM g WHERE language IS NOT NULL AND language <> '' "
                            "GROUP BY language ORDER BY c DESC, language LIMIT 10").fetchall()
        out["top_languages"] = {k: int(v) for k, v in langs}
    return out


def _value_counts(groups: pa.Table, column: str) -> dict[str, int]:
    counts = Counter("null" if v is None else v for v in groups.column(column).to_pylist())
    return {k: int(v) for k, v in sorted(counts.items())}


def summarise(groups: pa.Table) -> dict:
    out: dict = {"rows": groups.num_rows}
    for col in COUNTED:
        out[col] = _value_counts(groups, col)
    countries = Counter(c for c in groups.column("country").to_pylist() if c)
    out["countries_found"] = len(countries)
    out["top_countries"] = {k: int(v) for k, v in sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))[:10]}
    langs = Counter(c for c in groups.column("language").to_pylist() if c)
    out["top_languages"] = {k: int(v) for k, v in sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))[:10]}
    return out


def cctld_caption_agreement(groups_table: pa.Table) -> dict:
    """How often the caption's country matches the domain's, over rows that have both.

    The domain country is the page's when known, else the image URL's (the same order as `country`).
    """
    cap = groups_table.column("caption_country").to_pylist()
    page = groups_table.column("page_cctld_country").to_pylist()
    img = groups_table.column("url_cctld_country").to_pylist()
    pairs = [(c, p or i) for c, p, i in zip(cap, page, img) if c and (p or i)]
    n = len(pairs)
    k = sum(1 for c, d in pairs if c == d)
    out: dict = {"n": n, "agree": k, "rate": (k / n) if n else None, "ci_low": None, "ci_high": None}
    from audit.stats import proportion_interval

    if n:
        out["ci_low"], out["ci_high"] = (float(x) for x in proportion_interval(k, n))
    return out
