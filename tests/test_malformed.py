"""The malformed-input corpus (issue 9): every generated case through fairsift's CLI, 0 crashes allowed.

Cases come from tests/malformed/generate.py (each written on first use under a session folder); checks from
tests/malformed/harness.py. Cases that fail in code another part of the project owns are listed, with the reason,
in tests/malformed/known_failures.py and run as strict xfails: they fail loudly once they pass, so the list only
shrinks. FAIRSIFT_MALFORMED_IGNORE_KNOWN=1 runs them as ordinary tests.

HTTP on a loopback server and images go through the download stage in tests/test_download_malformed.py (its cases
come from tests/malformed/http_cases.py and image_cases.py); they count towards the corpus size here.
"""

from __future__ import annotations

import os

import pytest

from tests.malformed.generate import all_cases, generate_case
from tests.malformed.harness import run_case
from tests.malformed.known_failures import KNOWN_FAILURES

CASES = all_cases()
IGNORE_KNOWN = os.environ.get("FAIRSIFT_MALFORMED_IGNORE_KNOWN") == "1"

from tests.malformed.http_cases import http_cases  # noqa: E402  (run by tests/test_download_malformed.py)
from tests.malformed.image_cases import image_cases  # noqa: E402

HTTP_AND_IMAGE_CASES = len(http_cases()) + len(image_cases())


def _param(case):
    marks = []
    if case.key in KNOWN_FAILURES and not IGNORE_KNOWN:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case.key]))
    return pytest.param(case, id=case.key, marks=marks)


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    return tmp_path_factory.mktemp("malformed-corpus")


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_malformed_input(case, corpus_root, tmp_path):
    folder = corpus_root / case.category / case.name
    if not folder.exists():
        generate_case(case, corpus_root)
    run_case(case, folder, tmp_path / "run")


def test_corpus_size_and_names():
    keys = [case.key for case in CASES]
    assert len(set(keys)) == len(keys)
    assert len(CASES) + HTTP_AND_IMAGE_CASES >= 1000
    categories = {case.category for case in CASES}
    assert categories >= {"warc", "html", "list", "caption", "config"}, categories
    unknown = set(KNOWN_FAILURES) - set(keys)
    assert not unknown, f"known_failures.py names cases that do not exist: {sorted(unknown)[:10]}"
