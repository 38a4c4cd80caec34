"""The export stage: the kept rows of decisions, with their images, img2dataset's columns and clip_score, as
RUN/corpus/ (columns: curate.export.corpus).

On the part model (curate.parts): `export_part` turns one shards part into one corpus part, reading the decisions
part that decided it row by row (decisions_parts/, written by the filter) and its clip part; its lineage records
the digests of those parts and of its pairs part (for the saved additional columns), so a filter rerun that keeps
other rows rebuilds exactly the parts whose decisions changed, and no step holds the whole run's selection. A
decisions.parquet written some other way (no decisions parts behind it) is read by one DuckDB query that selects
every part's kept rows first (kept_selection). A part that kept nothing is a 0-row part with the schema, so
`pd.read_parquet("RUN/corpus")` gives an empty table when the filter kept nothing.

corpus/ holds only the Parquet parts, readable as they are by pandas, DuckDB and Hugging Face `datasets` (which
returns `image` as an Image feature from the parts' metadata). Options:

- `webdataset`: also RUN/corpus_webdataset/part-N.tar (<uid>.jpg, <uid>.txt, <uid>.json with every column but the
  image); a tar is redone when its corpus part's digest changed (recorded in corpus_webdataset/.sources.json);
- `format: img2dataset`: also RUN/img2dataset/ in img2dataset's own layout (curate.export.img2dataset_layout),
  parquet, or webdataset with `webdataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import tables
from curate.export import img2dataset_layout
from curate.export.corpus import CORPUS, corpus_table, pairs_extra_columns, read_kept_rows
from curate.export.tars import samples, write_tar
from curate.filter.context import signal_inputs
from curate.layout import DECISION_PARTS_DIR, IMG2DATASET_DIR, WEBDATASET_DIR
from curate.options import ExportOptions
from curate.parts import (
    MapParts, PartTask, atomic_write, part_digest, plan_tasks, remove_stale_outputs, serial_map,
    temp_path,
)

CORPUS_VERSION = 2  # in every corpus part's lineage: a change of the corpus columns redoes old parts
TAR_SOURCES = ".sources.json"  # in corpus_webdataset/: tar name -> digest of the corpus part it was written from
LEGACY_SOURCE_FILE = ".corpus_source.json"


@dataclass
class Selection:
    """The kept rows of one shards part and their clip values, in row order."""

    rows: list[int] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    scores: list = field(default_factory=list)
    models: list = field(default_factory=list)

    def digest(self, *columns: list) -> str:
        h = hashlib.blake2b(digest_size=16)
        for values in zip(*columns):
            h.update(repr(values).encode())
            h.update(b"\n")
        return h.hexdigest()


def export(run_dir: str | Path, options: ExportOptions, *, map_parts: MapParts = serial_map) -> dict:
    run_dir = Path(run_dir)
    shard_parts = tables.list_parts(run_dir, "shards")
    if not shard_parts:
        raise tables.MissingTableError(run_dir, "shards")
    if not tables.table_exists(run_dir, "decisions"):
        raise tables.MissingTableError(run_dir, "decisions")
    (run_dir / LEGACY_SOURCE_FILE).unlink(missing_ok=True)  # the corpus's record before parts carried lineage
    has_clip = tables.table_exists(run_dir, "clip")
    if decision_parts_match(run_dir, shard_parts):
        todo, current = _plan_per_part(run_dir, shard_parts, options)
        kept = _kept_count(run_dir)
    else:
        todo, current = _plan_from_global_selection(run_dir, shard_parts, options, has_clip)
        kept = sum(len(selection.rows) for _, selection in todo) + _kept_in(run_dir, current)
    map_parts(export_part, todo, desc="export")
    corpus_parts = [tables.part_path(run_dir, "corpus", p.name) for p in shard_parts]
    remove_stale_outputs(tables.table_path(run_dir, "corpus"), [p.name for p in corpus_parts])

    tars = _webdataset(run_dir, corpus_parts, options, map_parts)
    shards_written = _img2dataset(run_dir, corpus_parts, options, map_parts) if options.format == "img2dataset" else 0
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in corpus_parts)
    return {"rows": rows, "kept": kept, "parts": len(shard_parts), "parts_written": len(todo),
            "parts_skipped": len(current), "webdataset_tars_written": tars, "format": options.format,
            "img2dataset_shards_written": shards_written}


def decision_parts_match(run_dir: Path, shard_parts: list[Path]) -> bool:
    """Does decisions.parquet merge one current decisions part per shards part (the filter on the part model)? Then
    each corpus part reads only its own decisions part, and no step holds the whole run's selection."""
    current = tables.decision_parts(run_dir)
    return current is not None and sorted(p.name for p in current) == sorted(p.name for p in shard_parts)


def _plan_per_part(run_dir: Path, shard_parts: list[Path], options: ExportOptions):
    items = []
    for path in shard_parts:
        name = path.name
        # the shards part, the decisions part that decides it row by row, its pairs part (saved extra columns)
        # and its clip part(s)
        inputs = [_rel(run_dir, path), f"{DECISION_PARTS_DIR}/{name}"]
        pairs_part = tables.part_path(run_dir, "pairs", name)
        if pairs_part.is_file():
            inputs.append(_rel(run_dir, pairs_part))
        inputs += signal_inputs(run_dir, "clip", name)
        items.append((name, inputs, [_rel(run_dir, tables.part_path(run_dir, "corpus", name))]))
    todo, current = plan_tasks("export", run_dir, items, {"corpus_version": CORPUS_VERSION},
                               settings={"row_group_size": options.rows_per_part})
    return [(task, None) for task in todo], current


def part_selection(task: PartTask, shards_uids: list[str]) -> Selection:
    """The kept rows of one shards part from its own decisions part (row i decides shards row i), with the clip values
    of those rows from the clip parts the task reads."""
    decisions = pq.read_table(task.path(task.inputs[1]), columns=["uid", "kept"])
    uids = decisions.column("uid").to_pylist()
    if uids != shards_uids:
        raise ValueError(f"{task.inputs[1]} does not decide {task.inputs[0]} row by row; rerun `fairsift filter`")
    selection = Selection()
    selection.rows = [i for i, kept in enumerate(decisions.column("kept").to_pylist()) if kept]
    selection.uids = [uids[i] for i in selection.rows]
    clip_files = [task.path(rel) for rel in task.inputs if rel.startswith(tables.TABLE_PATHS["clip"] + "/")]
    found: dict[str, tuple] = {}
    for path in clip_files:
        clip = pq.read_table(path, columns=["uid", "clip_score", "model"]).to_pydict()
        for uid, score, model in zip(clip["uid"], clip["clip_score"], clip["model"]):
            found.setdefault(uid, (score, model))
    values = [found.get(u, (None, None)) for u in selection.uids]
    selection.scores = [v[0] for v in values]
    selection.models = [v[1] for v in values]
    return selection


def _kept_count(run_dir: Path) -> int:
    meta = pq.read_table(tables.table_path(run_dir, "decisions"), columns=["kept"]).column("kept")
    return int(pc.sum(meta).as_py() or 0)


def _kept_in(run_dir: Path, current: list[PartTask]) -> int:
    return sum(pq.ParquetFile(task.output_paths[0]).metadata.num_rows for task in current)


def _plan_from_global_selection(run_dir: Path, shard_parts: list[Path], options: ExportOptions, has_clip: bool):
    """For a decisions table the filter did not write part by part: one query selects every part's kept rows."""
    selections = kept_selection(run_dir, shard_parts, has_clip)
    todo, current = [], []
    for path in shard_parts:
        name = path.name
        selection = selections.get(name, Selection())
        inputs = [_rel(run_dir, path)]
        pairs_part = tables.part_path(run_dir, "pairs", name)
        if pairs_part.is_file():
            inputs.append(_rel(run_dir, pairs_part))
        extra = {"decisions.parquet": selection.digest(selection.rows, selection.uids)}
        if has_clip:
            extra["signals/clip"] = selection.digest(selection.scores, selection.models)
        output = _rel(run_dir, tables.part_path(run_dir, "corpus", name))
        t, c = plan_tasks("export", run_dir, [(name, inputs, [output])], {"corpus_version": CORPUS_VERSION},
                          settings={"row_group_size": options.rows_per_part}, extra_inputs=extra)
        todo += [(task, selection) for task in t]
        current += c
    return todo, current


def _rel(run_dir: Path, path: Path) -> str:
    return str(Path(path).relative_to(run_dir))


def kept_selection(run_dir: Path, shard_parts: list[Path], has_clip: bool) -> dict[str, Selection]:
    """Global step: the kept rows of every shards part, with their clip values (DuckDB reads only the uid column of
    shards). A uid listed twice in decisions or signals/clip counts once (its first row)."""
    import duckdb

    decisions = tables.table_path(run_dir, "decisions")
    clip_sql = ""
    clip_cols = "null::float as clip_score, null::varchar as model"
    if has_clip:
        clip_sql = (", c as (select distinct on (uid) uid, clip_score, model from read_parquet("
                    f"{tables.sql_file_list(tables.list_parts(run_dir, 'clip'))}, filename=true, file_row_number=true, "
                    "union_by_name=true) order by uid, filename, file_row_number)")
        clip_cols = "c.clip_score, c.model"
    query = (
        f"with d as (select distinct on (uid) uid, kept from read_parquet({tables.sql_file_list([decisions])}, "
        f"file_row_number=true) order by uid, file_row_number){clip_sql} "
        f"select s.filename, s.file_row_number as row, s.uid, {clip_cols} "
        f"from read_parquet({tables.sql_file_list(shard_parts)}, filename=true, file_row_number=true, union_by_name=true) s "
        f"join d on s.uid = d.uid {'left join c on s.uid = c.uid' if has_clip else ''} "
        "where d.kept order by s.filename, s.file_row_number"
    )
    con = duckdb.connect()
    try:
        reader = con.sql(query).to_arrow_reader()
        selections: dict[str, Selection] = {}
        for batch in reader:
            data = batch.to_pydict()
            for filename, row, uid, score, model in zip(data["filename"], data["row"], data["uid"],
                                                        data["clip_score"], data["model"]):
                s = selections.setdefault(Path(filename).name, Selection())
                s.rows.append(int(row))
                s.uids.append(uid)
                s.scores.append(score)
                s.models.append(model)
    finally:
        con.close()
    return selections


def export_part(item: tuple[PartTask, Optional[Selection]]) -> dict:
    """One shards part + its kept rows -> one corpus part (0 rows when none was kept). Without a selection, the part
    reads its own decisions and clip parts (part_selection)."""
    task, selection = item
    if selection is None:
        selection = part_selection(task, pq.read_table(task.input_paths[0], columns=["uid"]).column("uid").to_pylist())
    kept, rows_in_part = read_kept_rows(task.input_paths[0], selection.rows)
    pairs_rel = next((rel for rel in task.inputs if rel.startswith("pairs/")), None)
    pairs_extras = None
    if pairs_rel is not None:
        extras = pairs_extra_columns(task.path(pairs_rel))
        if extras:
            pairs_extras = pq.read_table(task.path(pairs_rel), columns=["uid"] + extras)
    table = corpus_table(kept, task.name, selection.rows, rows_in_part, selection.scores, selection.models,
                         pairs_extras)
    # task.write's atomic write and lineage, with the row-group size readers stream by
    atomic_write(table, task.output_paths[0], task.lineage, row_group_size=task.settings.get("row_group_size"))
    return {"rows": table.num_rows}


# ---- webdataset tars beside corpus/ ----
def _webdataset(run_dir: Path, corpus_parts: list[Path], options: ExportOptions, map_parts: MapParts) -> int:
    folder = run_dir / WEBDATASET_DIR
    sources_path = folder / TAR_SOURCES
    recorded = json.loads(sources_path.read_text()) if sources_path.is_file() else {}
    digests = {f"{p.stem}.tar": part_digest(p) for p in corpus_parts}
    if not options.webdataset:
        # tars of an earlier export that no longer match the corpus would mislead: remove them
        stale = [name for name in recorded if digests.get(name) != recorded[name]]
        for name in stale:
            (folder / name).unlink(missing_ok=True)
            recorded.pop(name)
        if stale:
            _write_json(sources_path, recorded)
        return 0
    todo = [(str(p), str(folder / f"{p.stem}.tar")) for p in corpus_parts
            if recorded.get(f"{p.stem}.tar") != digests[f"{p.stem}.tar"] or not (folder / f"{p.stem}.tar").is_file()]
    map_parts(write_corpus_tar, todo, desc="webdataset")
    for path in folder.glob("*.tar"):
        if path.name not in digests:
            path.unlink()
    _write_json(sources_path, digests)
    return len(todo)


def write_corpus_tar(item: tuple[str, str]) -> dict:
    """<uid>.jpg, <uid>.txt and <uid>.json (every column but the image) per corpus row."""
    corpus_path, tar_path = item
    part = pq.read_table(corpus_path)
    rows = part.to_pylist()
    n = write_tar(samples(rows, key=lambda r: r["uid"], image=lambda r: (r["image"] or {}).get("bytes"),
                          meta=lambda r: {k: v for k, v in r.items() if k != "image"}), Path(tar_path))
    return {"rows": n}


# ---- img2dataset's layout ----
def _img2dataset(run_dir: Path, corpus_parts: list[Path], options: ExportOptions, map_parts: MapParts) -> int:
    output_format = "webdataset" if options.webdataset else "parquet"
    folder = run_dir / IMG2DATASET_DIR
    shards = [img2dataset_layout.shard_name(p.name) for p in corpus_parts]
    items = [(p.name, [_rel(run_dir, p)], [f"{IMG2DATASET_DIR}/{s}.parquet"]) for p, s in zip(corpus_parts, shards)]
    todo, current = plan_tasks("export_img2dataset", run_dir, items,
                               {"output_format": output_format, "encode_format": "jpg"})
    if output_format == "webdataset":  # a tar deleted by hand is written again
        todo += [t for t in current if not t.output_paths[0].with_suffix(".tar").is_file()]
    map_parts(img2dataset_layout.write_shard, [(t, output_format) for t in todo], desc="img2dataset layout")
    expected = img2dataset_layout.expected_files(shards, output_format)
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.is_file() and not path.name.startswith(".") and path.name not in expected:
            path.unlink()
    return len(todo)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


__all__ = ["CORPUS", "export", "export_part", "kept_selection"]
