"""Cases of the malformed-input corpus that fail in code this branch does not own, with the owner and the reason.

Each runs as a strict xfail (tests/test_malformed.py): when the owner's fix lands, the case passes, the xfail fails,
and its line here must go. Never add a case of code you own: fix the code. To see the real state of every case,
run `FAIRSIFT_MALFORMED_IGNORE_KNOWN=1 pytest tests/test_malformed.py`.
"""

_INGEST = "curate/sources/ingest.py (ingest helper): "
_COLUMNS = _INGEST + "pandas' column-oriented JSON (the default DataFrame.to_json()) is read as one struct row: crash " \
                     "ArrowNotImplementedError 'Unsupported cast from struct... to utf8'"
_NAMELESS = _INGEST + "a column named '' (pandas' index or an empty header) is carried into pairs/"
_NESTED = _INGEST + "a struct or list caption column crashes: ArrowNotImplementedError (cast to utf8)"
_URL_ONLY = _INGEST + "a URL-only list is refused: --caption-col defaults to 'caption' and its absence is an error " \
                      "(JSON arrays and JSONL of plain strings are refused as well)"
_SURROGATE = _INGEST + "a JSON caption with a lone surrogate escape fails the whole list (pyarrow's JSON reader, or " \
                       "a UnicodeEncodeError whose message does not name the file)"

KNOWN_FAILURES: dict[str, str] = {
    **{f"list/pandas-json-columns-{variant}{gz}": _COLUMNS
       for variant in ("plain", "nan-captions", "missing-urls", "empty-strings", "ten-thousand-char-url", "unicode",
                       "int-captions", "extra-columns") for gz in ("", "-gz")},
    **{f"list/pandas-{kind}-records-extra-columns{gz}": _NAMELESS for kind in ("json", "jsonl") for gz in ("", "-gz")},
    "list/csv-pandas-default-with-index": _NAMELESS,
    "list/csv-duplicate-columns": _INGEST + "duplicate column names crash: KeyError 'Field \"url\" exists 2 times'",
    "list/parquet-struct-captions": _NESTED,
    "list/parquet-list-captions": _NESTED,
    "list/json-nested-caption-objects": _NESTED,
    **{f"list/url-only-{fmt}": _URL_ONLY for fmt in ("csv", "csv-pandas-index", "tsv", "jsonl", "json-records",
                                                     "json-columns", "json-array-of-strings", "jsonl-of-strings",
                                                     "parquet")},
    "list/json-mixed-types-per-row": _INGEST + "a JSON array whose rows mix value types crashes: ArrowTypeError in "
                                               "pa.Table.from_pylist",
    "list/json-deeply-nested": _INGEST + "a deeply nested JSON array crashes: RecursionError in json.loads",
    "list/json-lone-surrogates": _SURROGATE,
    "caption/lone-surrogate-jsonl": _SURROGATE,
    "caption/lone-low-surrogate-jsonl": _SURROGATE,
}
