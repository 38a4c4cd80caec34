"""`fairsift probe`: run the zero-shot probes of the datasets given and write their tables, prompts and manifest.

Output folder:
  probe_fairface.parquet, probe_harmful_labels.parquet, probe_association.parquet   (fairface:DIR)
  probe_country.parquet                                                             (country:CSV)
  predictions_*.parquet     every image's true labels, prediction and top-k scores, to recompute any number
  association_words.parquet the attribute words and their text embeddings (image embeddings are in
                            predictions_fairface.parquet), to recompute the association test
  prompts_used.json         the prompt files used, verbatim;  manifest.json  model, datasets, options, versions
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from curate.parts import temp_path
from audit.frame import to_arrow
from audit.prompts import load_prompt_file
from audit.probes.association import association_rows
from audit.probes.fairface import accuracy_probe, load_fairface
from audit.probes.geography import country_probe
from audit.probes.harmful import harmful_label_probe
from audit.probes.options import DatasetSpec, ProbeOptions, parse_dataset
from curate.versions import package_versions
from curate.score.clip_model import encode_texts, load_clip, model_info
from curate.tables import atomic_write_parquet

AUDIT_TABLES = {  # file stem -> analysis name
    "probe_fairface": "fairface",
    "probe_harmful_labels": "harmful_labels",
    "probe_association": "association",
    "probe_country": "country",
}
OTHER_OUTPUTS = ("predictions_fairface", "predictions_harmful_labels", "predictions_country", "association_words")
_FLOAT32_LISTS = ("top_scores", "image_embedding", "text_embedding")
def audit_table(rows: list[dict], analysis: str, min_count: int = 30) -> pa.Table:
    """The probe rows in the audit format, with min_count and flag_low_n (for a two-group test: its smaller group)."""
    frame = pd.DataFrame(rows)
    frame.insert(0, "analysis", analysis)
    frame.insert(1, "step", None)
    smallest = frame[["n_x", "n_y"]].min(axis=1) if {"n_x", "n_y"} <= set(frame.columns) else frame["n"]
    frame["min_count"] = int(min_count)
    frame["flag_low_n"] = smallest.to_numpy() < min_count
    return to_arrow(frame)


def predictions_table(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    for i, name in enumerate(table.column_names):
        if name.endswith(_FLOAT32_LISTS):
            table = table.set_column(i, name, table.column(name).cast(pa.list_(pa.float32())))
    return table


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _word_vectors(loaded, spec: dict) -> tuple[dict, pd.DataFrame]:
    vectors, rows = {}, []
    for name, words in spec["attribute_sets"].items():
        texts = [spec["template"].format(w) for w in words]
        vectors[name] = encode_texts(loaded, texts)
        rows += [{"set": name, "word": w, "text": t, "text_embedding": v.tolist()}
                 for w, t, v in zip(words, texts, vectors[name])]
    return vectors, pd.DataFrame(rows)


def run_probes(opts: ProbeOptions, out: Path) -> dict:
    specs: list[DatasetSpec] = [parse_dataset(d) for d in opts.datasets]
    if not specs:
        raise ValueError("give at least one --dataset KIND:PATH (fairface:DIR or country:CSV)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_clip(opts.model, pretrained=opts.pretrained, checkpoint=opts.checkpoint, device=opts.device)
    rows: dict[str, list[dict]] = {stem: [] for stem in AUDIT_TABLES}
    frames: dict[str, list[pd.DataFrame]] = {stem: [] for stem in OTHER_OUTPUTS}
    prompts_used: dict[str, dict] = {}
    dataset_facts = []
    for spec in specs:
        if spec.kind == "fairface":
            fairface, weat = load_prompt_file("fairface"), load_prompt_file("weat")
            prompts_used.update(fairface=fairface, weat=weat)
            data = load_fairface(loaded, spec.path, fairface, opts.batch_size)
            acc_rows, acc_preds = accuracy_probe(loaded, data, fairface, opts.n_boot, opts.seed, opts.top_k)
            harm_rows, harm_preds = harmful_label_probe(loaded, data, fairface, opts.n_boot, opts.seed, opts.top_k)
            word_vectors, words = _word_vectors(loaded, weat)
            ok = data.images.ok
            assoc = association_rows(data.images.vectors[ok], data.labels[ok].reset_index(drop=True), word_vectors,
                                     weat, opts.n_boot, opts.n_permutations, opts.seed, dataset=str(spec.path))
            rows["probe_fairface"] += acc_rows
            rows["probe_harmful_labels"] += harm_rows
            rows["probe_association"] += assoc
            frames["predictions_fairface"].append(acc_preds)
            frames["predictions_harmful_labels"].append(harm_preds)
            frames["association_words"] = [words]
            labels_file = spec.path / "labels.csv"
            dataset_facts.append({"dataset": str(spec), "kind": spec.kind, "path": str(spec.path),
                                  "labels_file": str(labels_file), "labels_sha256": _sha256(labels_file),
                                  "images": int(len(ok)), "images_failed": int((~ok).sum())})
        else:
            country = load_prompt_file("country211")
            prompts_used["country211"] = country
            geo_rows, geo_preds = country_probe(loaded, spec.path, country, opts.n_boot, opts.seed, opts.batch_size,
                                                opts.top_k)
            rows["probe_country"] += geo_rows
            frames["predictions_country"].append(geo_preds)
            failed = int((geo_preds["status"] != "success").sum())
            dataset_facts.append({"dataset": str(spec), "kind": spec.kind, "path": str(spec.path),
                                  "labels_file": str(spec.path), "labels_sha256": _sha256(spec.path),
                                  "images": int(len(geo_preds)), "images_failed": failed})

    written: dict[str, int] = {}
    for stem, analysis in AUDIT_TABLES.items():
        if rows[stem]:
            atomic_write_parquet(audit_table(rows[stem], analysis, opts.min_count), out / f"{stem}.parquet")
            written[stem] = len(rows[stem])
    for stem, parts in frames.items():
        if parts:
            frame = pd.concat(parts, ignore_index=True)
            atomic_write_parquet(predictions_table(frame), out / f"{stem}.parquet")
            written[stem] = len(frame)
    # a table left by an earlier probe with other datasets would not match this manifest
    for stem in (*AUDIT_TABLES, *OTHER_OUTPUTS):
        if stem not in written and (out / f"{stem}.parquet").exists():
            (out / f"{stem}.parquet").unlink()

    _write_json(out / "prompts_used.json", prompts_used)
    info = model_info(loaded)
    manifest = {
        "command": "probe",
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": info,
        "datasets": dataset_facts,
        "options": opts.model_dump(),
        "prompt_files": {name: data["version"] for name, data in prompts_used.items()},
        "tables": written,
        "versions": package_versions(),
    }
    _write_json(out / "manifest.json", manifest)
    counts = {"model": info, "datasets": len(specs), "tables": written,
              "images": sum(d["images"] for d in dataset_facts),
              "images_failed": sum(d["images_failed"] for d in dataset_facts)}
    _print_summary(out, counts)
    return counts


def _write_json(path: Path, data) -> None:
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    os.replace(tmp, path)


def _print_summary(out: Path, counts: dict) -> None:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # paths in logs stay whole
    model = counts["model"]
    console.print(f"probe: model {model['id']}; {counts['images']} images ({counts['images_failed']} unreadable)",
                  highlight=False)
    for stem, n in counts["tables"].items():
        console.print(f"  {out / (stem + '.parquet')}  {n} rows", highlight=False)
    console.print(f"  {out / 'manifest.json'}, {out / 'prompts_used.json'}", highlight=False)
