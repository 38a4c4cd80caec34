"""Cases of the malformed-input corpus that fail in code this branch does not own, with the owner and the reason.

Each runs as a strict xfail (tests/test_malformed.py): when the owner's fix lands, the case passes, the xfail fails,
and its line here must go. Never add a case of code you own: fix the code.
"""

KNOWN_FAILURES: dict[str, str] = {}
