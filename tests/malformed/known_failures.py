"""Cases of the malformed-input corpus that fail in code this branch does not own, with the owner and the reason.

Each runs as a strict xfail (tests/test_malformed.py): when the owner's fix lands, the case passes, the xfail fails,
and its line here must go. Never add a case of code you own: fix the code. To see the real state of every case,
run `FAIRSIFT_MALFORMED_IGNORE_KNOWN=1 pytest tests/test_malformed.py`.
"""

# every case once listed here (URL lists and captions in curate/sources/ingest.py) passes since the merge of the
# ingest rework: the list is empty, and must stay so
KNOWN_FAILURES: dict[str, str] = {}
