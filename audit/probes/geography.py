"""Zero-shot geolocation per country and per region, with Country211's classes and CLIP's templates for it.

The input is a CSV with columns `file` (relative to the CSV's folder) and `country` (a Country211 class name, an
ISO 3166 alpha-2/alpha-3 code or a name pycountry knows). Each image is classified among all 211 Country211
countries; "accuracy" is top-1 country accuracy and "region_accuracy" asks only whether the predicted country lies in
the true country's mledoze region.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pycountry

from audit.probes.group_metrics import accuracy, group_rows
from audit.probes.zero_shot import (
    read_checked_csv,
    argmax_labels,
    class_embeddings,
    encode_image_files,
    model_logit_scale,
    softmax_probs,
    templated,
    top_k,
)
from curate.score.clip_model import LoadedClip

CSV_COLUMNS = ("file", "country")


class CountryNames:
    """Country211's classes by alpha-2 code, and a lookup from what people write to that code."""

    def __init__(self, prompts: dict):
        self.classes = {c["code"]: c for c in prompts["classes"]}
        self._by_name = {c["name"].casefold(): c["code"] for c in prompts["classes"]}

    def code(self, value: str) -> str | None:
        text = value.strip()
        if text.upper() in self.classes and len(text) == 2:
            return text.upper()
        if text.casefold() in self._by_name:
            return self._by_name[text.casefold()]
        try:
            return pycountry.countries.lookup(text).alpha_2
        except LookupError:
            return None

    def region(self, code: str | None) -> str | None:
        return self.classes[code]["region"] if code in self.classes else None


def read_country_csv(path: Path, names: CountryNames) -> pd.DataFrame:
    table = read_checked_csv(path, CSV_COLUMNS, "country CSV")
    codes = []
    for row, value in enumerate(table["country"]):
        code = names.code(value)
        if code is None or code not in names.classes:
            why = "is not a country pycountry knows" if code is None else f"({code}) is not one of Country211's classes"
            raise ValueError(f"{path} row {row + 2}, field 'country': {value!r} {why}; use a Country211 name or an "
                             f"ISO 3166 alpha-2 code (audit/prompts/country211.json)")
        codes.append(code)
    out = pd.DataFrame({"file": table["file"], "country_input": table["country"], "country": codes})
    out["country_name"] = [names.classes[c]["name"] for c in codes]
    out["region"] = [names.region(c) for c in codes]
    out["path"] = [str(path.parent / f) for f in table["file"]]
    return out


def country_probe(loaded: LoadedClip, csv_path: Path, prompts: dict, n_boot: int, seed: int, batch_size: int,
                  k: int = 5) -> tuple[list[dict], pd.DataFrame]:
    names = CountryNames(prompts)
    table = read_country_csv(csv_path, names)
    images = encode_image_files(loaded, table["path"].tolist(), batch_size=batch_size, desc=f"country {csv_path.name}")
    classes = class_embeddings(loaded, templated({c: names.classes[c]["name"] for c in names.classes},
                                                 prompts["templates"]))
    probs = softmax_probs(images.vectors, classes, model_logit_scale(loaded))
    predictions = table.drop(columns=["path"])
    predictions.insert(0, "dataset", str(csv_path))
    predictions["status"] = images.status
    predictions["error_message"] = images.error_message
    predictions["pred_country"] = argmax_labels(probs, classes.labels)
    predictions["pred_region"] = [names.region(c) for c in predictions["pred_country"]]
    predictions["top_labels"], predictions["top_scores"] = top_k(probs, classes.labels, k)
    evaluated = predictions[images.ok]
    rows: list[dict] = []
    for attribute in ("country", "region"):
        groups = evaluated[attribute].rename(attribute)
        rows += group_rows(evaluated["country"], evaluated["pred_country"], groups, [accuracy()],
                           n_boot, seed, dataset=str(csv_path))
        rows += group_rows(evaluated["region"], evaluated["pred_region"].fillna(""), groups,
                           [accuracy("region_accuracy")], n_boot, seed, dataset=str(csv_path))
    return rows, predictions
