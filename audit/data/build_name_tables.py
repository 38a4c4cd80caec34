"""Regenerate person_surnames.csv: surnames that tell a person's name from a place name ("Paris Hilton").

    pip download --no-deps names==0.3.0 && tar xzf names-0.3.0.tar.gz
    python audit/data/build_name_tables.py --census names-0.3.0/names/dist.all.last

Input: the US Census 1990 surname list (`dist.all.last`, public domain) as shipped in the `names` 0.3.0 package
(MIT). Kept: the TOP_RANKS most frequent surnames, minus every surname that is also a common English word, i.e. a
lower-case entry of the Brill tagger lexicon shipped with textblob (`textblob/en/en-lexicon.txt`, MIT, from
Pattern), British spellings included ("Harbour" as "harbor"): "Street", "Bridge", "Young" or "King" after a
place name usually name a thing ("London Bridge", "Sydney Harbour Bridge").
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP_RANKS = 15_000


def common_english_words() -> set[str]:
    """Lower-case entries of the Brill lexicon that are not tagged as proper nouns."""
    import textblob.en

    words = set()
    lexicon = Path(textblob.en.__file__).with_name("en-lexicon.txt")
    for line in lexicon.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(";") and parts[0].islower() and not parts[1].startswith("NNP"):
            words.add(parts[0])
    return words


def build_surnames(census_path: Path) -> None:
    common = common_english_words()
    rows = []
    for line in census_path.read_text(encoding="ascii").splitlines():
        name, _freq, _cumulative, rank = line.split()
        if int(rank) > TOP_RANKS:
            break
        word = name.lower()
        # the lexicon is American English: "Harbour", "Colour" are English words too
        if word not in common and word.replace("our", "or") not in common:
            rows.append({"surname": name.lower(), "census_rank": int(rank)})
    with open(HERE / "person_surnames.csv", "w", newline="", encoding="utf-8") as f:
        f.write("# US Census 1990 surnames (public domain) via the names 0.3.0 package (MIT), top "
                f"{TOP_RANKS:,} by frequency, less common English words (Brill lexicon in textblob); see README.md\n")
        writer = csv.DictWriter(f, fieldnames=["surname", "census_rank"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"person_surnames.csv: {len(rows)} surnames")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--census", type=Path, required=True, help="dist.all.last from the names 0.3.0 sdist")
    build_surnames(ap.parse_args().census)


if __name__ == "__main__":
    main()
