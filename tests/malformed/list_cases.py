"""URL-list cases for `fairsift ingest`: every pandas JSON orient, JSON Lines, CSV with and without pandas' index,
URL-only lists of every format, empty and NaN cells, 10k-character URLs, odd types, broken files.

Outcome "either" means: reading the list is the right result (the pairs given), and a clear error naming the file is
acceptable too (a list with no column names, say); a crash never is."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.malformed.corpus import Case, Expect

ORIENTS = ("split", "records", "index", "columns", "values", "table")


def _urls(tag: str, n: int = 3) -> list[str]:
    return [f"http://l.example/{tag}/{i}.jpg" for i in range(n)]


def _frames(tag: str) -> Iterator[tuple[str, pd.DataFrame, list[tuple[str, str]], dict]]:
    """(variant, frame with url and caption columns, the pairs it must give, counters)."""
    urls = _urls(tag)
    captions = [f"A caption for image {i}" for i in range(3)]
    yield "plain", pd.DataFrame({"url": urls, "caption": captions}), list(zip(urls, captions)), {}
    yield ("nan_captions", pd.DataFrame({"url": urls, "caption": [captions[0], np.nan, None]}),
           [(urls[0], captions[0]), (urls[1], ""), (urls[2], "")], {})
    yield ("missing_urls", pd.DataFrame({"url": [urls[0], None, np.nan], "caption": captions}),
           [(urls[0], captions[0])], {"dropped.empty_url": 2})
    yield ("empty_strings", pd.DataFrame({"url": ["", urls[1], urls[2]], "caption": [captions[0], "", captions[2]]}),
           [(urls[1], ""), (urls[2], captions[2])], {"dropped.empty_url": 1})
    long_url = f"http://l.example/{tag}/" + "x" * 10_000 + ".jpg"
    yield ("ten_thousand_char_url", pd.DataFrame({"url": [long_url, urls[1]], "caption": captions[:2]}),
           [(long_url, captions[0]), (urls[1], captions[1])], {})
    yield ("unicode", pd.DataFrame({"url": [f"http://l.example/{tag}/写真.jpg"], "caption": ["日本語のキャプション"]}),
           [(f"http://l.example/{tag}/写真.jpg", "日本語のキャプション")], {})
    yield ("int_captions", pd.DataFrame({"url": urls, "caption": [1, 2, 3]}),
           [(u, str(k)) for u, k in zip(urls, (1, 2, 3))], {})
    yield ("extra_columns", pd.DataFrame({"url": urls, "caption": captions, "width": [1, 2, 3], "": ["a", "b", "c"]}),
           list(zip(urls, captions)), {})


def _orient_cases() -> Iterator[Case]:
    for orient in ORIENTS:
        for compressed in (False, True):
            for variant, frame, pairs, counters in _frames(f"{orient}-{variant_tag(compressed)}"):
                name = f"pandas-json-{orient}-{variant}{'-gz' if compressed else ''}".replace("_", "-")
                file_name = "list.json.gz" if compressed else "list.json"

                def build(frame=frame, orient=orient, compressed=compressed, file_name=file_name):
                    if orient in ("index", "columns") and variant_has_empty_column(frame):
                        frame = frame.drop(columns=[""])
                    text = frame.to_json(orient=orient).encode()
                    return {file_name: gzip.compress(text, mtime=0) if compressed else text}

                yield Case("list", name, "ingest", build,
                           Expect(outcome="either", pairs=pairs, counters=counters, error_contains=[file_name]),
                           sources=[file_name])
    for variant, frame, pairs, counters in _frames("jsonl"):
        for compressed in (False, True):
            name = f"pandas-jsonl-records-{variant}{'-gz' if compressed else ''}".replace("_", "-")
            file_name = "list.jsonl.gz" if compressed else "list.jsonl"

            def build(frame=frame, compressed=compressed, file_name=file_name):
                text = frame.to_json(orient="records", lines=True).encode()
                return {file_name: gzip.compress(text, mtime=0) if compressed else text}

            yield Case("list", name, "ingest", build, Expect(pairs=pairs, counters=counters), sources=[file_name])


def variant_tag(compressed: bool) -> str:
    return "gz" if compressed else "plain"


def variant_has_empty_column(frame: pd.DataFrame) -> bool:
    return "" in frame.columns  # JSON objects keyed by column need unique, non-empty names on the way back


def _csv_cases() -> Iterator[Case]:
    tag = "csv"
    urls = _urls(tag)
    captions = ["First, with a comma", 'Second "quoted"', "Third\nwith a newline"]
    frame = pd.DataFrame({"url": urls, "caption": captions})
    clean = [(u, " ".join(c.split())) for u, c in zip(urls, captions)]

    def csv(text: bytes, name: str, expect: Expect, file_name: str = "list.csv") -> Case:
        return Case("list", f"csv-{name}", "ingest", lambda: {file_name: text}, expect, sources=[file_name])

    yield csv(frame.to_csv().encode(), "pandas-default-with-index", Expect(pairs=clean))
    yield csv(frame.to_csv(index=False).encode(), "without-index", Expect(pairs=clean))
    yield csv(frame.set_index("url").to_csv().encode(), "url-as-index", Expect(pairs=clean))
    yield csv(frame.to_csv(index=False).encode("utf-8-sig"), "utf-8-bom", Expect(pairs=clean))
    yield csv(frame.to_csv(index=False, lineterminator="\r\n").encode(), "crlf", Expect(pairs=clean))
    yield csv(frame.to_csv(index=False, sep="\t").encode(), "tsv", Expect(pairs=clean), "list.tsv")
    yield csv(gzip.compress(frame.to_csv(index=False).encode(), mtime=0), "gzipped", Expect(pairs=clean), "list.csv.gz")
    yield csv(gzip.compress(frame.to_csv(index=False).encode(), mtime=0)[:-20], "gzip-cut-off",
              Expect(outcome="either", pairs_include=[], error_contains=["list.csv.gz"]), "list.csv.gz")
    ragged = f"url,caption\n{urls[0]},one\n{urls[1]},two,extra,fields\n{urls[2]}\n".encode()
    yield csv(ragged, "ragged-rows", Expect(pairs=[(urls[0], "one")], counters={"dropped.malformed_row": 2}))
    yield csv(frame.to_csv(index=False, sep=";").encode(), "semicolons",
              Expect(outcome="error", error_contains=["list.csv", "url"]))
    yield csv(f"url,caption\n{urls[0]},Caf\xe9 au lait\n".encode("latin-1"), "latin-1-bytes",
              Expect(outcome="either", pairs=[(urls[0], "Caf\ufffd au lait")], error_contains=["list.csv"]))
    yield csv(f"url,caption\n{urls[0]},A\x00B\n{urls[1]},C\n".encode(), "nul-bytes",
              Expect(outcome="either", pairs=[(urls[0], "A B"), (urls[1], "C")], error_contains=["list.csv"]))
    yield csv(b"url,caption\n", "header-only", Expect(outcome="either", pairs=[], error_contains=["list.csv"]))
    yield csv(b"", "empty-file", Expect(outcome="error", error_contains=["list.csv"]))
    yield csv(f"url,url,caption\n{urls[0]},{urls[1]},x\n".encode(), "duplicate-columns",
              Expect(outcome="either", pairs=[(urls[0], "x")], error_contains=["list.csv"]))
    yield csv(b"url,caption\n1,one\n2,two\n", "numbers-as-urls", Expect(pairs=[], counters={"dropped.invalid_url": 2}))
    yield csv(f"url,caption\n{urls[0]},\n{urls[1]},\n".encode(), "empty-caption-cells",
              Expect(pairs=[(urls[0], ""), (urls[1], "")]))
    yield csv(("url,caption\n" + "".join(f"{u},same\n" for u in [urls[0]] * 3)).encode(), "duplicate-rows",
              Expect(pairs=[(urls[0], "same")], counters={"dropped.duplicate_in_list": 2}))
    yield csv(b"\xff\xfe\x00\x01garbage\x00" * 100, "binary-garbage",
              Expect(outcome="either", pairs=[], error_contains=["list.csv"]))


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _pandas_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _parquet_cases() -> Iterator[Case]:
    urls = _urls("parquet")
    captions = ["one", "two", "three"]
    pairs = list(zip(urls, captions))

    def one(name: str, build, expect: Expect) -> Case:
        return Case("list", f"parquet-{name}", "ingest", lambda: {"list.parquet": build()}, expect,
                    sources=["list.parquet"])

    frame = pd.DataFrame({"url": urls, "caption": captions})
    yield one("pandas-range-index", lambda: _pandas_parquet(frame), Expect(pairs=pairs))
    yield one("pandas-string-index", lambda: _pandas_parquet(frame.set_index(pd.Index(["a", "b", "c"]))),
              Expect(pairs=pairs))
    yield one("pandas-url-as-index", lambda: _pandas_parquet(frame.set_index("url")), Expect(pairs=pairs))
    yield one("all-null-captions", lambda: _parquet(pa.table({"url": urls, "caption": pa.nulls(3)})),
              Expect(pairs=[(u, "") for u in urls]))
    yield one("int-urls", lambda: _parquet(pa.table({"url": [1, 2, 3], "caption": captions})),
              Expect(pairs=[], counters={"dropped.invalid_url": 3}))
    yield one("struct-captions", lambda: _parquet(pa.table({"url": urls, "caption": [{"text": c} for c in captions]})),
              Expect(outcome="either", pairs=None, error_contains=["list.parquet", "caption"]))
    yield one("list-captions", lambda: _parquet(pa.table({"url": urls, "caption": [[c] for c in captions]})),
              Expect(outcome="either", pairs=None, error_contains=["list.parquet", "caption"]))
    yield one("dictionary-columns", lambda: _parquet(pa.table({"url": pa.array(urls).dictionary_encode(),
                                                              "caption": pa.array(captions).dictionary_encode()})),
              Expect(pairs=pairs))
    yield one("large-strings", lambda: _parquet(pa.table({"url": pa.array(urls, pa.large_string()),
                                                         "caption": pa.array(captions, pa.large_string())})),
              Expect(pairs=pairs))
    yield one("zero-rows", lambda: _parquet(pa.table({"url": pa.array([], pa.string()), "caption": pa.array([], pa.string())})),
              Expect(outcome="either", pairs=[], error_contains=["list.parquet"]))
    yield one("cut-off", lambda: _pandas_parquet(frame)[:-100], Expect(outcome="error", error_contains=["list.parquet"]))
    yield one("not-parquet", lambda: b"PAR1 this is not parquet PAR1", Expect(outcome="error", error_contains=["list.parquet"]))
    yield one("binary-captions", lambda: _parquet(pa.table({"url": urls, "caption": [c.encode() for c in captions]})),
              Expect(outcome="either", pairs=pairs, error_contains=["list.parquet"]))


def _url_only_cases() -> Iterator[Case]:
    """A list of URLs and nothing else, in every format: pairs with empty captions."""
    urls = _urls("url-only")
    pairs = [(u, "") for u in urls]
    lines = "\n".join(urls).encode()
    frame = pd.DataFrame({"url": urls})
    formats = {
        "txt": ("list.txt", lambda: lines + b"\n"),
        "txt-crlf-blank-lines": ("list.txt", lambda: b"\r\n".join(u.encode() for u in urls) + b"\r\n\r\n\r\n"),
        "txt-bom": ("list.txt", lambda: b"\xef\xbb\xbf" + lines),
        "txt-gz": ("list.txt.gz", lambda: gzip.compress(lines, mtime=0)),
        "csv": ("list.csv", lambda: frame.to_csv(index=False).encode()),
        "csv-pandas-index": ("list.csv", lambda: frame.to_csv().encode()),
        "tsv": ("list.tsv", lambda: frame.to_csv(index=False, sep="\t").encode()),
        "jsonl": ("list.jsonl", lambda: frame.to_json(orient="records", lines=True).encode()),
        "json-records": ("list.json", lambda: frame.to_json(orient="records").encode()),
        "json-columns": ("list.json", lambda: frame.to_json().encode()),
        "json-array-of-strings": ("list.json", lambda: json.dumps(urls).encode()),
        "jsonl-of-strings": ("list.jsonl", lambda: "\n".join(json.dumps(u) for u in urls).encode()),
        "parquet": ("list.parquet", lambda: _pandas_parquet(frame)),
    }
    for name, (file_name, build) in formats.items():
        yield Case("list", f"url-only-{name}", "ingest", lambda f=file_name, b=build: {f: b()},
                   Expect(pairs=pairs), sources=[file_name])
    yield Case("list", "txt-with-junk-lines", "ingest",
               lambda: {"list.txt": b"\n".join([urls[0].encode(), b"# a comment", b"not a url", b"\x00\x01",
                                                urls[1].encode(), b" " + urls[2].encode() + b" "])},
               Expect(pairs=pairs, counters={"dropped.invalid_url": 3}), sources=["list.txt"])


def _json_oddities() -> Iterator[Case]:
    url = "http://l.example/odd/0.jpg"

    def one(name: str, text: bytes, expect: Expect, file_name: str = "list.json") -> Case:
        expect.error_contains = expect.error_contains or [file_name]
        return Case("list", f"json-{name}", "ingest", lambda: {file_name: text}, expect, sources=[file_name])

    yield one("invalid", b'[{"url": "http://l.example/a.jpg", ', Expect(outcome="error"))
    yield one("scalar", b"42", Expect(outcome="error"))
    yield one("empty-array", b"[]", Expect(outcome="either", pairs=[]))
    yield one("empty-object", b"{}", Expect(outcome="either", pairs=[]))
    yield one("array-of-arrays", json.dumps([[url, "cap"]]).encode(), Expect(outcome="either", pairs=[(url, "cap")]))
    yield one("mixed-types-per-row", json.dumps([{"url": url, "caption": "a"}, {"url": 5, "caption": ["x"]},
                                                 {"url": None, "caption": {"k": 1}}]).encode(),
              Expect(outcome="either", pairs_include=[(url, "a")]))
    yield one("nested-caption-objects", json.dumps([{"url": url, "caption": {"en": "Hello", "fr": "Bonjour"}}]).encode(),
              Expect(outcome="either", pairs=None))
    yield one("lone-surrogates", b'[{"url": "' + url.encode() + b'", "caption": "bad \\ud800 pair"}]',
              Expect(outcome="either", pairs=[(url, "bad \ufffd pair")]))
    yield one("nul-escape", b'[{"url": "' + url.encode() + b'", "caption": "A\\u0000B"}]',
              Expect(outcome="either", pairs=[(url, "A B")]))
    yield one("huge-number", b'[{"url": "' + url.encode() + b'", "caption": 1e999}]', Expect(outcome="either", pairs=None))
    yield one("deeply-nested", b"[" * 50_000 + b"]" * 50_000, Expect(outcome="either", pairs=[]))
    yield one("jsonl-with-bad-line", (json.dumps({"url": url, "caption": "ok"}) + "\n{broken\n").encode(),
              Expect(outcome="either", pairs_include=[]), "list.jsonl")
    yield one("jsonl-blank-lines", (json.dumps({"url": url, "caption": "ok"}) + "\n\n\n").encode(),
              Expect(pairs=[(url, "ok")]), "list.jsonl")


def cases() -> Iterator[Case]:
    yield from _orient_cases()
    yield from _csv_cases()
    yield from _parquet_cases()
    yield from _url_only_cases()
    yield from _json_oddities()
