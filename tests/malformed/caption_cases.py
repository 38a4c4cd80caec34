"""Caption cases: control characters, NUL, right-to-left text, zero-width characters, 100k and 1M characters, each
carried by an HTML alt (crawl), a WAT link (crawl), and a JSON Lines, CSV and Parquet list (ingest). Expected
captions are written out by hand: control characters become spaces, whitespace runs one space, a caption of nothing
visible is empty (crawl drops it as empty_alt, ingest keeps the URL with an empty caption), lone surrogates U+FFFD,
and a caption over 1000 characters is cut at a word and flagged."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pandas as pd

from tests.malformed import archives as A
from tests.malformed.corpus import Case, Expect

LONG_WORDS = " ".join(["word"] * 200)  # "word " * 20000 cut to 1000 characters, the trailing space trimmed

# (name, caption as written, caption as stored; None: no caption at all)
CAPTIONS: list[tuple[str, str, str | None]] = [
    ("plain", "A cat on a sofa", "A cat on a sofa"),
    ("nul-inside", "A\x00cat", "A cat"),
    ("nul-only", "\x00\x00\x00", None),
    ("c0-run", "A\x01\x02\x03cat\x1f", "A cat"),
    ("del", "A\x7fcat", "A cat"),
    ("c1-controls", "A\x80\x9fcat", "A cat"),
    ("tab-newline-cr", "A\tcat\non a\r\nsofa", "A cat on a sofa"),
    ("nbsp-and-ideographic-space", "A\u00a0cat\u3000here", "A cat here"),
    ("line-and-paragraph-separators", "A\u2028cat\u2029here", "A cat here"),
    ("arabic", "صورة قطة على الأريكة", "صورة قطة على الأريكة"),
    ("hebrew", "חתול על הספה", "חתול על הספה"),
    ("mixed-direction", "A cat قطة 123 חתול", "A cat قطة 123 חתול"),
    ("rtl-override-inside", "A \u202ecat\u202c here", "A \u202ecat\u202c here"),
    ("rtl-override-only", "\u202e\u202c", None),
    ("zero-width-space-inside", "A\u200bcat", "A\u200bcat"),
    ("zero-width-only", "\u200b\u200c\u200d\u2060\ufeff", None),
    ("zero-width-and-spaces", " \u200b \ufeff \u200b ", None),
    ("zero-width-around", "\u200b\ufeffA cat\u200b\u2060", "A cat"),
    ("zwnj-persian", "می\u200cخواهم", "می\u200cخواهم"),
    ("zwj-emoji", "\U0001f408\u200d\u2b1b a black cat", "\U0001f408\u200d\u2b1b a black cat"),
    ("soft-hyphen-only", "\u00ad", None),
    ("combining-marks", "c\u0337\u0321a\u0338t", "c\u0337\u0321a\u0338t"),
    ("astral", "\U0001d49c\U0001f600 math and smile", "\U0001d49c\U0001f600 math and smile"),
    ("whitespace-only", "   \t\n  ", None),
    ("hundred-thousand-chars", "word " * 20_000, LONG_WORDS),
    ("million-chars-no-space", "x" * 1_000_000, "x" * 1000),
    ("entities-stay-text", "Fish &amp; chips", "Fish &amp; chips"),
    ("html-in-caption", "<b>bold</b> <script>x</script>", "<b>bold</b> <script>x</script>"),
    ("quotes-and-commas", 'He said "hi", then left', 'He said "hi", then left'),
    ("backslashes", "C:\\path\\to\\cat.jpg shown", "C:\\path\\to\\cat.jpg shown"),
]
for code in [c for c in range(1, 32) if chr(c) not in "\t\n\r"]:
    CAPTIONS.append((f"control-{code:02x}", f"Left{chr(code)}right", "Left right"))
# only JSON can carry these
JSON_ONLY = [("lone-surrogate", "A\ud800cat", "A\ufffdcat"), ("lone-low-surrogate", "\udc00 tail", "\ufffd tail")]


def _html_text(raw: str) -> str:
    """How an HTML attribute carries a caption: escaped, with NUL turned into U+FFFD by the HTML parser itself."""
    return raw.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# the HTML standard turns NUL in an attribute value into U+FFFD, so these read differently from an alt
HTML_CAPTIONS = {"nul-inside": "A\ufffdcat", "nul-only": "placeholder_alt"}  # U+FFFD alone: no letters


def _crawl_expect(url: str, stored: str | None, truncated: bool | None) -> Expect:
    if stored in (None, "placeholder_alt"):
        reason = "placeholder_alt" if stored else "empty_alt"
        return Expect(pairs=[], counters={f"dropped.{reason}": 1, "files_unreadable": 0})
    return Expect(pairs=[(url, stored)], caption_truncated=truncated, counters={"files_unreadable": 0})


def _list_expect(url: str, stored: str | None, truncated: bool | None) -> Expect:
    return Expect(pairs=[(url, stored or "")], caption_truncated=truncated)


def cases() -> Iterator[Case]:
    for name, raw, stored in CAPTIONS + JSON_ONLY:
        url = f"http://c.example/{name}.jpg"
        truncated = stored is not None and len(" ".join(raw.split())) > 1000
        json_only = (name, raw, stored) in JSON_ONLY
        if not json_only:
            html = f'<!doctype html><meta charset="utf-8"><img src="{url}" alt="{_html_text(raw)}">'.encode("utf-8")
            yield Case("caption", f"{name}-html-alt", "crawl", lambda h=html: {"page.html": h},
                       _crawl_expect(url, HTML_CAPTIONS.get(name, stored), truncated), sources=["page.html"])
        wat = A.wat_record("http://c.example/page.html", A.wat_envelope("http://c.example/page.html",
                                                                        [A.img_link(url, raw)]))
        yield Case("caption", f"{name}-wat-alt", "crawl", lambda w=wat: {"x.wat.gz": A.gzip_members([w])},
                   _crawl_expect(url, stored, truncated), sources=["x.wat.gz"])
        jsonl = (json.dumps({"url": url, "caption": raw}) + "\n").encode()
        yield Case("caption", f"{name}-jsonl", "ingest", lambda j=jsonl: {"list.jsonl": j},
                   _list_expect(url, stored, truncated), sources=["list.jsonl"])
        if json_only:
            continue
        frame = pd.DataFrame({"url": [url], "caption": [raw]})
        yield Case("caption", f"{name}-csv", "ingest", lambda f=frame: {"list.csv": f.to_csv(index=False).encode()},
                   _list_expect(url, stored, truncated), sources=["list.csv"])
        yield Case("caption", f"{name}-parquet", "ingest", lambda f=frame: {"list.parquet": _parquet(f)},
                   _list_expect(url, stored, truncated), sources=["list.parquet"])


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
