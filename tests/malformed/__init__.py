"""Generators of malformed inputs (images, HTTP behaviours) with the status each must end in; reusable by any harness
(tests/test_download_malformed.py runs them through the download stage)."""
