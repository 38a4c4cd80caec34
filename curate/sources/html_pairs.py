"""HTML page -> (image URL, caption) pairs, with every dropped image counted by reason.

Caption order: the img's `alt`, else the enclosing <figure>'s <figcaption>, else the img's `title`. Placeholder alt
texts ("image", "IMG_1234.jpg", "12") carry no description, so they fall through to the next source like an empty alt.
Parsing uses selectolax's lexbor engine, an HTML5 parser that accepts any byte soup without raising.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from curate.sources.pair_rows import clean_url, clip_caption, is_http_url, normalise_whitespace

# alt texts that name the kind of thing, not what it shows; matched whole, case-insensitively, optionally numbered
PLACEHOLDER_WORDS = (
    "image", "img", "photo", "photograph", "picture", "pic", "logo", "icon", "spacer", "thumbnail", "thumb",
    "placeholder", "banner", "graphic", "untitled", "blank", "null", "undefined", "none", "alt", "alt text",
)
_PLACEHOLDER_WORD = re.compile(r"^(?:%s)[\s_\-#.]*\d*$" % "|".join(re.escape(w) for w in PLACEHOLDER_WORDS), re.I)
# a bare file name ("holiday.JPG", "image1.png") or a camera's default name ("IMG_1234", "DSC0001", "P1010001")
_FILE_NAME = re.compile(r"^[\w\-. ]+\.(?:jpe?g|png|gif|webp|bmp|svg|tiff?|avif|heic|ico)$", re.I)
_CAMERA_NAME = re.compile(r"^(?:img|dsc[nf]?|dcim|pict?|pxl|mvimg|gopr|sam|p)[_\- ]?\d{3,}(?:[_\-]\d+)*$", re.I)
# nothing but digits, punctuation and symbols: "12", "-", "…"
_NO_LETTERS = re.compile(r"^[\W\d_]+$")

# attributes that lazy-loading scripts put the real image URL in when `src` is missing or a data: placeholder
LAZY_SRC_ATTRS = ("data-src", "data-lazy-src", "data-original")
SRCSET_ATTRS = ("srcset", "data-srcset")


def is_placeholder_caption(caption: str) -> bool:
    return bool(
        _PLACEHOLDER_WORD.match(caption)
        or _FILE_NAME.match(caption)
        or _CAMERA_NAME.match(caption)
        or _NO_LETTERS.match(caption)
    )


@dataclass(frozen=True)
class ImageCandidate:
    """One image reference as found on a page, before any check."""

    src: str | None
    alt: str | None = None
    figcaption: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Pair:
    url: str
    caption: str
    caption_source: str
    caption_truncated: bool


# ---- decoding ----------------------------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# the WHATWG encoding standard decodes these labels as windows-1252, and so do browsers
_AS_WINDOWS_1252 = {"iso8859-1", "latin-1", "ascii", "us-ascii", "iso-8859-1", "latin1"}


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    if label in _AS_WINDOWS_1252:
        label = "windows-1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def meta_charset(body: bytes) -> str | None:
    """The charset a page declares in its first 4 KiB (<meta charset> or <meta http-equiv content="...charset=">)."""
    match = _META_CHARSET.search(body[:4096])
    return match.group(1).decode("ascii") if match else None


def decode_html(body: bytes, http_charset: str | None = None) -> str:
    """Text of a page: BOM, then the HTTP charset, then <meta charset>, then UTF-8, each tried strictly; when none
    fits, the most authoritative one with undecodable bytes replaced. Never raises.

    A strict failure of the HTTP charset falls through to the page's own declaration because servers often send a
    blanket "utf-8" for legacy pages that declare windows-1252 themselves. A UTF-16/32 label on bytes without a single
    NUL among the first KiB is passed over: markup in those encodings always has NULs, so the label is wrong, and
    decoding by it would turn the whole page into unreadable text.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors="replace")
    candidates = [c for c in (_codec(http_charset), _codec(meta_charset(body)), "utf-8") if c]
    if b"\x00" not in body[:1024]:
        candidates = [c for c in candidates if not c.startswith(("utf-16", "utf-32"))] or ["utf-8"]
    for name in dict.fromkeys(candidates):
        try:
            return body.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    return body.decode(candidates[0], errors="replace")


# ---- finding images and links ------------------------------------------------------------------------------------


def _attr(node: LexborNode, name: str) -> str | None:
    value = node.attributes.get(name)
    return value.strip() if value else None


_SRCSET_CANDIDATE = re.compile(r"[\s,]*([^\s]+)")


def _first_srcset_url(srcset: str) -> str | None:
    """The first candidate URL of a srcset, parsed as the HTML standard does: leading spaces and commas skipped, the
    URL runs to the next space (so it may hold commas), trailing commas are not part of it."""
    match = _SRCSET_CANDIDATE.match(srcset)
    url = match.group(1).rstrip(",") if match else ""
    return url or None


def _picture_source(node: LexborNode) -> str | None:
    """The first <source srcset> of the <picture> an <img> sits in (the img is the picture's fallback)."""
    parent = node.parent
    if parent is None or parent.tag != "picture":
        return None
    for child in parent.iter():
        if child.tag == "source" and (value := _attr(child, "srcset")) and (url := _first_srcset_url(value)):
            return url
    return None


def image_src(node: LexborNode) -> str | None:
    """`src`; when it is missing or a data: placeholder, the lazy-loading attribute, the first srcset candidate or
    the first <source> of its <picture>."""
    src = _attr(node, "src")
    if src and not src.lower().startswith("data:"):
        return src
    for name in LAZY_SRC_ATTRS:
        if value := _attr(node, name):
            return value
    for name in SRCSET_ATTRS:
        if (value := _attr(node, name)) and (url := _first_srcset_url(value)):
            return url
    return _picture_source(node) or src  # else None or the data: URI, dropped later with its reason


def _figcaption_text(img: LexborNode) -> str | None:
    node = img.parent
    while node is not None and node.tag not in ("figure", "html"):
        node = node.parent
    if node is None or node.tag != "figure":
        return None
    caption = node.css_first("figcaption")
    return caption.text(deep=True, separator=" ") if caption is not None else None


def parse_html(text: str) -> LexborHTMLParser:
    return LexborHTMLParser(text)


def resolve_base(page_url: str, href: str | None) -> str:
    """A <base href> resolved against the page URL; the page URL itself when there is none, or when it does not
    resolve to an http(s) URL (a "javascript:" or "data:" base would otherwise turn every image into a non-URL)."""
    if not isinstance(href, str) or not href.strip():
        return page_url
    try:
        base = urljoin(page_url, href.strip())
    except ValueError:
        return page_url
    return base if urlsplit(base).scheme.lower() in ("http", "https") or not is_http_url(page_url) else page_url


def base_url(tree: LexborHTMLParser, page_url: str) -> str:
    """The page URL, or the first <base href> resolved against it."""
    base = tree.css_first("base[href]")
    return resolve_base(page_url, _attr(base, "href") if base is not None else None)


def image_candidates(tree: LexborHTMLParser) -> list[ImageCandidate]:
    return [
        ImageCandidate(src=image_src(img), alt=img.attributes.get("alt"), figcaption=_figcaption_text(img),
                       title=img.attributes.get("title"))
        for img in tree.css("img")
    ]


def page_links(tree: LexborHTMLParser, base: str) -> list[str]:
    """Absolute http(s) targets of <a href>, without fragments, in document order, each once."""
    links: dict[str, None] = {}
    for anchor in tree.css("a[href]"):
        href = _attr(anchor, "href")
        if not href:
            continue
        try:
            url = urldefrag(urljoin(base, href)).url
        except ValueError:
            continue
        if urlsplit(url).scheme in ("http", "https"):
            links.setdefault(url, None)
    return list(links)


# ---- candidates -> pairs -----------------------------------------------------------------------------------------


def choose_caption(candidate: ImageCandidate) -> tuple[str, str] | str:
    """(caption, caption_source), or the drop reason when no source gives a real caption."""
    saw_placeholder = False
    for source, raw in (("alt", candidate.alt), ("figcaption", candidate.figcaption), ("title", candidate.title)):
        text = normalise_whitespace(raw)
        if not text:
            continue
        if is_placeholder_caption(text):
            saw_placeholder = True
            continue
        return text, source
    return "placeholder_alt" if saw_placeholder else "empty_alt"


def resolve_image_url(src: str | None, base: str) -> tuple[str | None, str | None]:
    """(absolute image URL, None), or (None, the reason it is dropped)."""
    if not src:
        return None, "missing_src"
    if src.lower().startswith("data:"):
        return None, "data_uri"
    try:
        url = urldefrag(urljoin(base, clean_url(src))).url
    except ValueError:
        return None, "invalid_url"
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return None, "non_http_url"
    return (url, None) if is_http_url(url) else (None, "invalid_url")


def pairs_from_candidates(
    candidates: list[ImageCandidate], base: str, max_caption_chars: int, dropped: Counter
) -> list[Pair]:
    """Check each candidate; keep the good ones (first of each url+caption on the page), count the rest in `dropped`."""
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for candidate in candidates:
        url, reason = resolve_image_url(candidate.src, base)
        if url is None:
            dropped[reason] += 1
            continue
        chosen = choose_caption(candidate)
        if isinstance(chosen, str):
            dropped[chosen] += 1
            continue
        caption, source = chosen
        caption, truncated = clip_caption(caption, max_caption_chars)
        if (url, caption) in seen:
            dropped["duplicate_in_page"] += 1
            continue
        seen.add((url, caption))
        pairs.append(Pair(url, caption, source, truncated))
    return pairs


@dataclass
class Page:
    """A page to extract from: HTML bytes, or (from a WAT file) image candidates already taken out of the HTML."""

    url: str
    source: str  # "html", "warc" or "http"
    body: bytes | None = None
    http_charset: str | None = None
    candidates: list[ImageCandidate] | None = None
    base: str | None = None


@dataclass
class ParsedPage:
    pairs: list[Pair]
    links: list[str]


def extract_page(
    body: bytes, page_url: str, max_caption_chars: int, dropped: Counter, http_charset: str | None = None
) -> ParsedPage:
    tree = parse_html(decode_html(body, http_charset))
    base = base_url(tree, page_url)
    pairs = pairs_from_candidates(image_candidates(tree), base, max_caption_chars, dropped)
    return ParsedPage(pairs=pairs, links=page_links(tree, base))
