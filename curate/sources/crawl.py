"""The crawl stage: HTML files and folders, WARC/WAT files and http(s) start URLs -> RUN/pairs/.

Sources are read in the order given (folders in sorted path order, WARCs in record order, sites breadth-first), so
the same sources give the same parts. crawl is the first stage: it rewrites pairs/ from scratch on every run.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from curate.sources.html_pairs import Page, Pair, extract_page, pairs_from_candidates
from curate.sources.http_crawl import CrawlLimits, crawl_site
from curate.options import CrawlOptions
from curate.sources.pair_rows import PartWriter, remove_parts
from curate.tables import compute_uid
from curate.sources.warc_pairs import WARC_SUFFIXES, is_warc_path, iter_warc_pages

log = logging.getLogger(__name__)

HTML_SUFFIXES = (".html", ".htm")
DROP_REASONS = (
    "missing_src", "data_uri", "non_http_url", "invalid_url", "empty_alt", "placeholder_alt",
    "duplicate_in_page", "duplicate_across_pages",
)


def classify_source(source: str) -> tuple[str, str | Path]:
    """("http", url) | ("warc", path) | ("html", path) | ("folder", path); ValueError for anything else."""
    if source.lower().startswith(("http://", "https://")):
        return "http", source
    path = Path(source)
    if path.is_dir():
        return "folder", path
    if not path.exists():
        raise ValueError(f"crawl source not found: {source} (expected an HTML file or folder, a WARC/WAT file "
                         "or an http(s) URL)")
    if is_warc_path(path):
        return "warc", path
    if path.suffix.lower() in HTML_SUFFIXES:
        return "html", path
    raise ValueError(f"crawl source {source}: unsupported file type; expected {', '.join(HTML_SUFFIXES)} "
                     f"or {', '.join(WARC_SUFFIXES)}")


def html_files(folder: Path) -> list[Path]:
    files = (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in HTML_SUFFIXES)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


class PairCollector:
    """Turns each page's pairs into rows, keeps the first of every uid across pages, writes parts as they fill."""

    def __init__(self, run_dir: Path, rows_per_part: int, dropped: Counter):
        self.writer = PartWriter(run_dir, rows_per_part)
        self.dropped = dropped
        self._seen: set[str] = set()

    def add(self, page: Page, pairs: list[Pair]) -> None:
        rows = []
        for pair in pairs:
            uid = compute_uid(pair.url, pair.caption)
            if uid in self._seen:
                self.dropped["duplicate_across_pages"] += 1
                continue
            self._seen.add(uid)
            rows.append({"uid": uid, "url": pair.url, "caption": pair.caption, "page_url": page.url,
                         "source": page.source, "caption_source": pair.caption_source,
                         "caption_truncated": pair.caption_truncated})
        self.writer.add_rows(rows)

    @property
    def kept(self) -> int:
        return len(self._seen)


class _PageHandler:
    """Extracts one page into the collector; a page that cannot be handled is counted, not raised."""

    def __init__(self, collector: PairCollector, options: CrawlOptions, counts: Counter, progress: tqdm):
        self.collector, self.options, self.counts, self.progress = collector, options, counts, progress

    def __call__(self, page: Page) -> list[str]:
        links: list[str] = []
        try:
            if page.candidates is not None:
                pairs = pairs_from_candidates(page.candidates, page.base or page.url,
                                              self.options.max_caption_chars, self.collector.dropped)
            else:
                parsed = extract_page(page.body or b"", page.url, self.options.max_caption_chars,
                                      self.collector.dropped, page.http_charset)
                pairs, links = parsed.pairs, parsed.links
        except Exception as exc:  # noqa: BLE001 - one bad page must not stop the crawl
            log.warning("crawl: page %s failed: %s: %s", page.url, type(exc).__name__, exc)
            self.counts["pages_failed"] += 1
            return []
        self.counts["pages"] += 1
        self.collector.add(page, pairs)
        self.progress.update(1)
        self.progress.set_postfix(pairs=self.collector.kept, refresh=False)
        return links


def _crawl_files(files: list[Path], handle: _PageHandler, counts: Counter) -> None:
    for path in files:
        try:
            body = path.read_bytes()
        except OSError as exc:
            log.warning("crawl: cannot read %s: %s", path, exc)
            counts["pages_failed"] += 1
            continue
        handle(Page(url=path.resolve().as_uri(), source="html", body=body))


def crawl(run_dir: Path, options: CrawlOptions) -> dict:
    if not options.sources:
        raise ValueError("crawl needs at least one source: an HTML file or folder, a WARC/WAT file or an http(s) URL")
    sources = [classify_source(s) for s in options.sources]  # every source checked before any work
    run_dir = Path(run_dir)
    remove_parts(run_dir, "pairs")

    counts: Counter = Counter()
    dropped: Counter = Counter({reason: 0 for reason in DROP_REASONS})
    collector = PairCollector(run_dir, options.rows_per_part, dropped)
    limits = CrawlLimits(max_depth=options.max_depth, max_pages=options.max_pages, timeout=options.timeout,
                         allow_private_network=options.allow_private_network)
    with tqdm(desc="crawl", unit="page", file=sys.stderr, mininterval=0.5) as progress:
        handle = _PageHandler(collector, options, counts, progress)
        for kind, value in sources:
            if kind == "http":
                crawl_site(value, limits, counts, handle)
            elif kind == "warc":
                for page in iter_warc_pages(value, counts):
                    handle(page)
            else:
                _crawl_files(html_files(value) if kind == "folder" else [value], handle, counts)
    collector.writer.close()

    result = {
        "sources": len(sources),
        "pages": counts["pages"],
        "pages_failed": counts["pages_failed"],
        "pages_refused_private": counts["pages_refused_private"],
        "pairs": collector.writer.rows_written,
        "parts": collector.writer.parts_written,
        "dropped": dict(dropped),
    }
    for optional in ("pages_refused_robots", "pages_not_html", "warc_records", "warc_bad_records"):
        if optional in counts or (optional == "warc_bad_records" and any(k == "warc" for k, _ in sources)):
            result[optional] = counts[optional]
    return result
