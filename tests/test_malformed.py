"""The malformed-input corpus (issue 9): every generated case through fairsift's CLI, 0 crashes allowed.

Cases come from tests/malformed/generate.py (each written on first use under a session folder); checks from
tests/malformed/harness.py. Cases that fail in code another part of the project owns are listed, with the reason,
in tests/malformed/known_failures.py and run as strict xfails: they fail loudly once they pass, so the list only
shrinks. FAIRSIFT_MALFORMED_IGNORE_KNOWN=1 runs them as ordinary tests.

HTTP on a loopback server and images belong to the download stage: when tests/malformed/http_cases.py exists it
must provide CASES (a list) and run_case(case, tmp_path), and each of its cases runs here as well.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.malformed.generate import all_cases, generate_case
from tests.malformed.harness import run_case
from tests.malformed.known_failures import KNOWN_FAILURES

CASES = all_cases()
IGNORE_KNOWN = os.environ.get("FAIRSIFT_MALFORMED_IGNORE_KNOWN") == "1"

if importlib.util.find_spec("tests.malformed.http_cases") is not None:
    from tests.malformed import http_cases  # the download stage's cases: HTTP on loopback, images

    HTTP_CASES = list(http_cases.CASES)
else:
    http_cases, HTTP_CASES = None, []


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


@pytest.mark.skipif(not HTTP_CASES, reason="tests/malformed/http_cases.py (download stage) not present")
@pytest.mark.parametrize("case", HTTP_CASES or [None], ids=lambda c: getattr(c, "name", str(c)))
def test_malformed_http_and_image_input(case, tmp_path):
    http_cases.run_case(case, tmp_path)


def test_corpus_size_and_names():
    keys = [case.key for case in CASES]
    assert len(set(keys)) == len(keys)
    assert len(CASES) + len(HTTP_CASES) >= 1000
    categories = {case.category for case in CASES}
    assert categories >= {"warc", "html", "list", "caption", "config"}, categories
    unknown = set(KNOWN_FAILURES) - set(keys)
    assert not unknown, f"known_failures.py names cases that do not exist: {sorted(unknown)[:10]}"
