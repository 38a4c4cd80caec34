"""HTML cases: deep nesting, broken and mislabelled encodings, 10 MB pages, srcset/data-src/<picture>, broken markup
and odd URLs. Each page goes to `fairsift crawl` twice: as a local file, and as the response of a WARC (where the
HTTP Content-Type may name a charset). Expected pairs are written out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable, Optional

from tests.malformed import archives as A
from tests.malformed.corpus import Case, Expect

HOST = "http://h.example"
PAGE = f"{HOST}/dir/page.html"


@dataclass
class Page:
    name: str
    html: Callable[[], bytes]
    pairs: Optional[list[tuple[str, str]]]  # exact; None: only `include` is known
    include: list[tuple[str, str]] = field(default_factory=list)
    counters: dict = field(default_factory=dict)
    base: bool = True  # a local file gets <base href=PAGE> first, so relative URLs mean the same in both carriers
    http_charset: Optional[str] = None  # the WARC response's Content-Type charset
    carriers: tuple[str, ...] = ("file", "warc")
    truncated: Optional[bool] = None


def doc(body: str, head: str = "", charset: Optional[str] = "utf-8", encoding: str = "utf-8") -> bytes:
    meta = f'<meta charset="{charset}">' if charset else ""
    return f"<!doctype html><html><head>{meta}{head}<title>t</title></head><body>{body}</body></html>".encode(encoding)


def img(src: str, alt: str, extra: str = "") -> str:
    return f'<img src="{src}" alt="{alt}"{extra}>'


def _nesting() -> Iterator[Page]:
    # 100,000 levels only where lexbor stays linear: for <div>/<figure> its scope checks make a 100k-deep page take
    # about a minute (quadratic), a known limit of the parser
    for depth in (10, 1_000, 10_000, 100_000):
        for tag in ("div", "span", "b", "a", "li", "figure", "table"):
            if depth > 10_000 and tag in ("div", "figure"):
                continue
            open_tag, close_tag = {"a": ('<a href="/x">', "</a>"), "table": ("<table><tr><td>", "</td></tr></table>")}.get(
                tag, (f"<{tag}>", f"</{tag}>"))
            body = (img("/top.jpg", "The top image") + open_tag * depth + img("/deep.jpg", "The deepest image")
                    + close_tag * depth)
            yield Page(f"nesting-{tag}-{depth}", lambda b=body: doc(b),
                       [(f"{HOST}/top.jpg", "The top image"), (f"{HOST}/deep.jpg", "The deepest image")],
                       carriers=("file", "warc") if depth <= 10_000 else ("file",))
        unclosed = img("/top.jpg", "The top image") + "<span>" * depth + img("/deep.jpg", "The deepest image")
        yield Page(f"nesting-unclosed-{depth}", lambda b=unclosed: doc(b),
                   [(f"{HOST}/top.jpg", "The top image"), (f"{HOST}/deep.jpg", "The deepest image")])
        figcaption = ("<figure>" + img("/f.jpg", "") + "<figcaption>" + "<span>" * depth + "A deep caption"
                      + "</span>" * depth + "</figcaption></figure>")
        yield Page(f"nesting-in-figcaption-{depth}", lambda b=figcaption: doc(b), [(f"{HOST}/f.jpg", "A deep caption")])


CAFE = "Café crème at the Zürich station"


def _encodings() -> Iterator[Page]:
    def same(text: str, encoding: str, charset: Optional[str], http: Optional[str] = None, name: str = "") -> Page:
        return Page(f"encoding-{name or encoding}", lambda: doc(img(f"{HOST}/e.jpg", text), charset=charset,
                                                                 encoding=encoding),
                    [(f"{HOST}/e.jpg", text)], http_charset=http, base=False)

    yield same(CAFE, "utf-8", "utf-8")
    yield same(CAFE, "utf-8", None, name="utf-8-undeclared")
    yield same(CAFE, "cp1252", "windows-1252")
    yield same(CAFE, "cp1252", "iso-8859-1", name="latin1-label-for-cp1252")
    yield same("Caf\u00e9 \u2014 \u201cquoted\u201d \u20ac5", "cp1252", "us-ascii", name="ascii-label-for-cp1252")
    yield same("東京の夜景", "shift_jis", "shift_jis")
    yield same("東京の夜景", "euc_jp", "euc-jp")
    yield same("北京的夜景", "gb18030", "gb18030")
    yield same("北京的夜景", "gbk", "gb2312", name="gb2312-label")
    yield same("臺北的夜景", "big5", "big5")
    yield same("서울의 야경", "euc_kr", "euc-kr")
    yield same("Московский вечер", "koi8_r", "koi8-r")
    yield same("Московский вечер", "cp1251", "windows-1251")
    yield same("Αθήνα τη νύχτα", "iso8859_7", "iso-8859-7")
    yield same("صورة المدينة ليلا", "cp1256", "windows-1256")
    yield same("תמונה של העיר", "cp1255", "windows-1255")
    yield same(CAFE, "utf-8", "utf-9", name="unknown-label")
    yield same(CAFE, "utf-8", "x-user-defined", name="x-user-defined-label")
    yield same(CAFE, "utf-8", "../../etc/passwd", name="path-as-label")
    yield same(CAFE, "utf-8", "", name="empty-label")
    # the HTTP header charset is wrong, the page's own declaration right (WARC only). HTTP's charset comes first
    # (as in the HTML standard) unless the bytes do not decode by it, so a label under which any bytes decode wins:
    for http in ("shift_jis", "ascii"):  # "ascii" means windows-1252 (WHATWG), which decodes any bytes
        page = same(CAFE, "utf-8", "utf-8", http=http, name=f"http-{http}-page-utf-8")
        page.carriers, page.pairs, page.counters = ("warc",), None, {"pairs": 1}
        yield page
    for http in ("utf-16", "no-such-charset"):
        page = same(CAFE, "utf-8", "utf-8", http=http, name=f"http-{http}-page-utf-8")
        page.carriers = ("warc",)
        yield page
    page = same(CAFE, "cp1252", "windows-1252", http="utf-8", name="http-utf-8-page-cp1252")
    page.carriers = ("warc",)
    yield page
    # BOMs win over every declaration
    for bom, encoding in (("\ufeff", "utf-8"), ("\ufeff", "utf-16-le"), ("\ufeff", "utf-16-be")):
        yield Page(f"encoding-bom-{encoding}", lambda b=bom, e=encoding: (b + '<meta charset="windows-1252">'
                                                                         + img(f"{HOST}/e.jpg", CAFE)).encode(e),
                   [(f"{HOST}/e.jpg", CAFE)], base=False)
    # mislabelled: the bytes do not fit the label; the pair must survive with some caption, and never crash
    for name, data in [
        ("cp1252-labelled-utf-8", lambda: doc(img(f"{HOST}/e.jpg", CAFE), charset="utf-8", encoding="cp1252")),
        ("utf-8-labelled-cp1252", lambda: doc(img(f"{HOST}/e.jpg", CAFE), charset="windows-1252")),
        ("utf-8-labelled-shift_jis", lambda: doc(img(f"{HOST}/e.jpg", CAFE), charset="shift_jis")),
        ("utf-8-labelled-utf-16", lambda: doc(img(f"{HOST}/e.jpg", CAFE), charset="utf-16")),
        ("meta-after-4kb", lambda: ("<!-- " + "x" * 5000 + ' --><meta charset="windows-1252">'
                                    + img(f"{HOST}/e.jpg", CAFE)).encode("cp1252")),
        ("invalid-utf-8-bytes", lambda: doc(img(f"{HOST}/e.jpg", "A plain caption")).replace(b"<body>", b"<body>\xff\xfe\xc3(")),
    ]:
        yield Page(f"encoding-{name}", data, None, include=[], counters={"pairs": 1}, base=False)
    yield Page("encoding-utf-16-without-bom", lambda: img(f"{HOST}/e.jpg", CAFE).encode("utf-16-le"), None, base=False)
    yield Page("encoding-utf-32", lambda: ("\ufeff" + img(f"{HOST}/e.jpg", CAFE)).encode("utf-32"), None, base=False)


def _big_pages() -> Iterator[Page]:
    ten_mb = 10 * 1024 * 1024
    filler = "<p>" + "lorem ipsum dolor sit amet " * 40 + "</p>\n"
    text = filler * (ten_mb // len(filler))
    yield Page("ten-mb-text-three-images",
               lambda: doc(img("/start.jpg", "The start") + text[: len(text) // 2] + img("/middle.jpg", "The middle")
                           + text[len(text) // 2:] + img("/end.jpg", "The end")),
               [(f"{HOST}/start.jpg", "The start"), (f"{HOST}/middle.jpg", "The middle"), (f"{HOST}/end.jpg", "The end")])
    n = 20_000
    yield Page("ten-mb-twenty-thousand-images",
               lambda: doc("".join(img(f"/i/{k}.jpg", f"Image number {k}", ' class="' + "c" * 480 + '"')
                                   for k in range(n))),
               [(f"{HOST}/i/{k}.jpg", f"Image number {k}") for k in range(n)], carriers=("file",))
    yield Page("ten-mb-alt", lambda: doc(img("/long.jpg", "word " * (ten_mb // 5))),
               [(f"{HOST}/long.jpg", " ".join(["word"] * 200))], truncated=True, carriers=("file",))
    yield Page("ten-mb-unclosed-comment", lambda: doc(img("/a.jpg", "Before the comment") + "<!--" + text
                                                      + img("/b.jpg", "Inside the comment")),
               [(f"{HOST}/a.jpg", "Before the comment")], carriers=("file",))
    yield Page("ten-mb-one-line-no-tags", lambda: ("x" * ten_mb).encode(), [], carriers=("file",))
    for tag in ("br", "p", "i"):  # void, self-closing by the next one, and formatting (reconstructed at every block)
        yield Page(f"ten-mb-of-{tag}-tags", lambda t=tag: (f"<{t}>" * (ten_mb // (len(t) + 2))).encode()
                   + img("/z.jpg", "Last").encode(), [(f"{HOST}/z.jpg", "Last")], carriers=("file",))


def _images() -> Iterator[Page]:
    def one(name: str, body: str, pairs, **kw) -> Page:
        return Page(name, lambda: doc(body), pairs, **kw)

    p = lambda path, caption: (f"{HOST}{path}", caption)  # noqa: E731
    yield one("srcset-density", '<img srcset="/a.jpg 1x, /b.jpg 2x" alt="Srcset image">', [p("/a.jpg", "Srcset image")])
    yield one("srcset-width", '<img srcset="/a-320.jpg 320w, /a-640.jpg 640w" sizes="50vw" alt="Widths">',
              [p("/a-320.jpg", "Widths")])
    yield one("srcset-comma-in-url", '<img srcset="/a,b.jpg 1x, /c.jpg 2x" alt="Comma">', [p("/a,b.jpg", "Comma")])
    yield one("srcset-leading-commas", '<img srcset=",,, /b.jpg 2x" alt="Commas first">', [p("/b.jpg", "Commas first")])
    yield one("srcset-newlines", '<img srcset="\n\t /n.jpg\n 1x,\n /m.jpg 2x" alt="Newlines">', [p("/n.jpg", "Newlines")])
    yield one("srcset-empty", '<img srcset="" alt="No source">', [], counters={"dropped.missing_src": 1})
    yield one("srcset-only-commas", '<img srcset=" , , " alt="No source">', [], counters={"dropped.missing_src": 1})
    yield one("data-src-with-placeholder",
              '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/lazy.jpg" alt="Lazy">', [p("/lazy.jpg", "Lazy")])
    yield one("data-src-only", '<img data-src="/lazy.jpg" alt="Lazy">', [p("/lazy.jpg", "Lazy")])
    yield one("data-lazy-src", '<img data-lazy-src="/l.jpg" alt="Lazy two">', [p("/l.jpg", "Lazy two")])
    yield one("data-original", '<img data-original="/o.jpg" alt="Original">', [p("/o.jpg", "Original")])
    yield one("data-srcset", '<img data-srcset="/d.jpg 1x, /e.jpg 2x" alt="Data srcset">', [p("/d.jpg", "Data srcset")])
    yield one("src-empty-data-src", '<img src="" data-src="/x.jpg" alt="Empty src">', [p("/x.jpg", "Empty src")])
    yield one("src-blank", '<img src="   " alt="Blank src">', [], counters={"dropped.missing_src": 1})
    yield one("data-uri-only", '<img src="data:image/png;base64,iVBORw0KGgo=" alt="Inline">', [],
              counters={"dropped.data_uri": 1})
    yield one("picture-with-img", '<picture><source srcset="/p.webp" type="image/webp"><img src="/p.jpg" '
                                  'alt="Sunset over the bay"></picture>', [p("/p.jpg", "Sunset over the bay")])
    yield one("picture-img-without-src", '<picture><source srcset="/p.webp 1x, /p2.webp 2x"><img alt="Pic only source">'
                                         "</picture>", [p("/p.webp", "Pic only source")])
    yield one("picture-without-img", '<picture><source srcset="/p.webp"></picture>', [])
    yield one("uppercase-tags", '<IMG SRC="/U.JPG" ALT="Upper case">', [p("/U.JPG", "Upper case")])
    yield one("duplicate-attributes", '<img src="/first.jpg" src="/second.jpg" alt="First" alt="Second">',
              [p("/first.jpg", "First")])
    yield one("unquoted-attributes", "<img src=/u.jpg alt=Unquoted>", [p("/u.jpg", "Unquoted")])
    yield one("entities-in-alt", '<img src="/e.jpg" alt="Fish &amp; chips &#233;t&eacute; &lt;3 &nbsp;">',
              [p("/e.jpg", "Fish & chips été <3")])
    yield one("nul-entity-in-alt", '<img src="/n.jpg" alt="A&#0;B&#x1;C">', None, include=[])
    yield one("script-holding-an-img", "<script>document.write('<img src=\"/s.jpg\" alt=\"Script\">')</script>"
              + img("/real.jpg", "Real one"), [p("/real.jpg", "Real one")])
    yield one("svg-image", '<svg><image href="/svg.jpg"/></svg>' + img("/real.jpg", "Real one"), [p("/real.jpg", "Real one")])
    yield one("noscript-and-template", "<noscript>" + img("/ns.jpg", "No script") + "</noscript><template>"
              + img("/tp.jpg", "Template") + "</template>" + img("/real.jpg", "Real one"), None,
              include=[p("/real.jpg", "Real one")])
    yield one("spaces-in-src", '<img src="/my photo.jpg" alt="Spaces">', [p("/my%20photo.jpg", "Spaces")])
    yield one("newline-tab-in-src", '<img src="/a\n/b\t.jpg" alt="Tabs">', [p("/a/b.jpg", "Tabs")])
    yield one("unicode-src", '<img src="/фото/写真.jpg" alt="Unicode path">', [p("/фото/写真.jpg", "Unicode path")])
    yield one("protocol-relative-src", '<img src="//cdn.example/a.jpg" alt="CDN">', [("http://cdn.example/a.jpg", "CDN")])
    yield one("other-schemes", '<img src="javascript:alert(1)" alt="JS"><img src="mailto:a@b.c" alt="Mail">'
              '<img src="ftp://f.example/a.jpg" alt="FTP">', [], counters={"dropped.non_http_url": 3})
    yield one("broken-ipv6-src", '<img src="http://[::1/a.jpg" alt="Broken IPv6">', [], counters={"dropped.invalid_url": 1})
    yield one("port-out-of-range", '<img src="http://h.example:99999/a.jpg" alt="Bad port">', [],
              counters={"dropped.invalid_url": 1})
    yield one("hostless-src", '<img src="http:///a.jpg" alt="No host">', None, include=[])
    long_path = "/" + "a" * 10_000 + ".jpg"
    yield one("ten-thousand-char-src", f'<img src="{long_path}" alt="Long URL">', [p(long_path, "Long URL")])
    yield one("hundred-thousand-char-alt", img("/a.jpg", "word " * 20_000), [p("/a.jpg", " ".join(["word"] * 200))],
              truncated=True)
    yield one("img-in-link", '<a href="/x">' + img("/in-link.jpg", "In a link") + "</a>", [p("/in-link.jpg", "In a link")])
    yield one("hash-src", '<img src="#" alt="Hash">', [(PAGE, "Hash")])


def _bases() -> Iterator[Page]:
    def one(name: str, head: str, pairs) -> Page:
        page = Page(name, lambda: doc(img("x.jpg", "Base test"), head=head), pairs)
        page.carriers = ("warc",)  # the page URL is http only there
        return page

    yield one("base-two", '<base href="http://one.example/a/"><base href="http://two.example/b/">',
              [("http://one.example/a/x.jpg", "Base test")])
    yield one("base-relative", '<base href="/sub/">', [(f"{HOST}/sub/x.jpg", "Base test")])
    yield one("base-javascript", '<base href="javascript:void(0)">', [(f"{HOST}/dir/x.jpg", "Base test")])
    yield one("base-data", '<base href="data:text/html,x">', [(f"{HOST}/dir/x.jpg", "Base test")])
    yield one("base-empty", '<base href="">', [(f"{HOST}/dir/x.jpg", "Base test")])
    yield one("base-broken-ipv6", '<base href="http://[::1/">', [(f"{HOST}/dir/x.jpg", "Base test")])


def _broken_markup() -> Iterator[Page]:
    ok = img(f"{HOST}/ok.jpg", "The good image")
    pair = [(f"{HOST}/ok.jpg", "The good image")]
    raw = lambda name, data, pairs=None, include=(): Page(name, lambda: data, pairs, include=list(include), base=False)  # noqa: E731
    yield raw("empty-file", b"", [])
    yield raw("whitespace-only", b" \n\t\r\n ", [])
    yield raw("png-bytes", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, [])
    yield raw("nul-bytes-everywhere", ok.encode().replace(b" ", b" \x00"), None)
    yield raw("nul-before-image", b"\x00" * 1000 + ok.encode(), pair)
    yield raw("img-at-eof", (ok + '<img src="/cut.jpg" alt="cut').encode(), None, include=pair)
    yield raw("unclosed-attribute-quote", ('<img src="/a.jpg alt=Unclosed>' + ok).encode(), None)
    yield raw("angle-soup", ("<<<>>>" * 50_000 + ok).encode(), None, include=pair)
    yield raw("cdata-and-pi", ("<![CDATA[<img src=/c.jpg alt=C>]]><?xml version='1.0'?>" + ok).encode(), None, include=pair)
    yield raw("frameset", ("<frameset><frame src=/f.html></frameset>" + ok).encode(), None)
    yield raw("only-a-doctype", b"<!doctype html>", [])
    yield raw("xhtml-namespaces", ('<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body>'
                                   + ok + "</body></html>").encode(), pair)
    # lexbor checks each attribute against the ones before it: 100k attributes take minutes, 5k a tenth of a second
    yield raw("five-thousand-attributes", ("<img " + " ".join(f"a{k}=v" for k in range(5_000))
                                     + f' src="{HOST}/m.jpg" alt="Many attributes">').encode(),
              [(f"{HOST}/m.jpg", "Many attributes")])


def pages() -> Iterator[Page]:
    yield from _nesting()
    yield from _encodings()
    yield from _big_pages()
    yield from _images()
    yield from _bases()
    yield from _broken_markup()


def _with_base(html: bytes) -> bytes:
    return f'<base href="{PAGE}">'.encode() + html


def cases() -> Iterator[Case]:
    for page in pages():
        for carrier in page.carriers:
            name = f"{page.name}-{carrier}"
            counters = {"files_unreadable": 0, "pages": 1, **page.counters}
            expect = Expect(pairs=page.pairs, pairs_include=page.include, counters=counters,
                            caption_truncated=page.truncated)
            if carrier == "file":
                build = lambda pg=page: {"page.html": _with_base(pg.html()) if pg.base else pg.html()}  # noqa: E731
                yield Case("html", name, "crawl", build, expect, sources=["page.html"])
            else:
                def build(pg=page):
                    content_type = "text/html" + (f"; charset={pg.http_charset}" if pg.http_charset else "")
                    return {"page.warc.gz": A.gzip_members([A.warc_response(PAGE, pg.html(), content_type=content_type)])}

                expect.counters = {**counters, "warc_bad_records": 0}
                yield Case("html", name, "crawl", build, expect, sources=["page.warc.gz"])
