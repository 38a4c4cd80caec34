"""The malformed-input corpus of issue 9, written to a folder: `python -m tests.malformed.generate OUT [CATEGORY...]`.

OUT/<category>/<case>/ holds the case's files and expect.json (the interface it goes through and what must come of
it); OUT/cases.json lists every case. tests/test_malformed.py runs each case through fairsift's CLI (see
tests/malformed/harness.py); the corpus can also be fed by hand, e.g. `fairsift crawl OUT/warc/<case>/x.warc.gz`.

Categories: warc (WARC/WAT/ARC), html, list (URL lists), caption, config. HTTP on a loopback server and images are
the download stage's cases (tests/malformed/http_cases.py, when present; see tests/test_malformed.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.malformed import caption_cases, config_cases, html_cases, list_cases, warc_cases
from tests.malformed.corpus import Case
from tests.malformed.harness import write_case

CATEGORIES = {"warc": warc_cases, "html": html_cases, "list": list_cases, "caption": caption_cases,
              "config": config_cases}


def all_cases(categories: list[str] | None = None) -> list[Case]:
    cases = [case for name, module in CATEGORIES.items() if not categories or name in categories
             for case in module.cases()]
    keys = [case.key for case in cases]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate case names: {duplicates[:10]}")
    return cases


def case_meta(case: Case) -> dict:
    return {"category": case.category, "name": case.name, "interface": case.interface, "sources": case.sources,
            "flags": case.flags, "expect": case.expect.to_json()}


def generate_case(case: Case, root: Path) -> Path:
    folder = write_case(case, root)
    (folder / "expect.json").write_text(json.dumps(case_meta(case), indent=1, ensure_ascii=True))
    return folder


def generate(root: Path, categories: list[str] | None = None) -> list[Case]:
    cases = all_cases(categories)
    for case in cases:
        generate_case(case, root)
    (root / "cases.json").write_text(json.dumps([case_meta(c) for c in cases], indent=1, ensure_ascii=True))
    return cases


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    root = Path(argv[0])
    cases = generate(root, argv[1:] or None)
    counts = {name: sum(c.category == name for c in cases) for name in CATEGORIES}
    print(f"{len(cases)} cases in {root}: " + ", ".join(f"{k}={v}" for k, v in counts.items() if v))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
