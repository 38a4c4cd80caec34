"""The crawl stage: HTML files and folders, WARC/WAT/ARC files and http(s) start URLs -> RUN/pairs/.

Sources are read in the order given (folders in sorted path order, archives in record order, sites breadth-first), so
the same sources give the same parts. crawl is the first stage: it rewrites pairs/ from scratch on every run.
A file's format comes from its bytes (curate.sources.formats), so a folder is searched for every format crawl reads,
and a source that gives no page is named in a warning and counted.

Counters in the summary, besides pages and pairs: `files_unreadable` (a file that could not be read at all),
`files_skipped` (files in a folder that are none of the crawlable formats), `sources_without_pages`, and for archives
`archive_files`, `warc_records`, `warc_bad_records` with `warc_bad_record_reasons`, `warc_wrong_length_records`,
`warc_bare_lf_records`, `warc_not_2xx`, `warc_not_html` (see curate.sources.warc_records and warc_pairs).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from curate.options import CrawlOptions
from curate.sources.formats import FileFormat, crawlable_files, sniff
from curate.sources.html_pairs import Page, Pair, extract_page, pairs_from_candidates
from curate.sources.http_crawl import CrawlLimits, crawl_site
from curate.sources.pair_rows import PartWriter, remove_parts
from curate.sources.warc_pairs import iter_archive_pages
from curate.sources.archive_streams import bad_record_reasons
from curate.tables import compute_uid

log = logging.getLogger(__name__)

ACCEPTED = ("an HTML page (.html, .htm, .xhtml), a WARC, WAT or ARC file (plain, gzip, LZ4 or Zstandard compressed), "
            "a folder of them, or an http(s) URL")
ARCHIVE_COUNTERS = ("archive_files", "warc_records", "warc_bad_records", "warc_wrong_length_records",
                    "warc_bare_lf_records", "warc_not_2xx", "warc_not_html")
DROP_REASONS = (
    "missing_src", "data_uri", "non_http_url", "invalid_url", "empty_alt", "placeholder_alt",
    "duplicate_in_page", "duplicate_across_pages",
)


Source = tuple[str, "str | Path", "FileFormat | None"]


def classify_source(source: str) -> Source:
    """("http", url, None) | ("folder", path, None) | ("file", path, format); ValueError for anything else."""
    if source.lower().startswith(("http://", "https://")):
        return "http", source, None
    path = Path(source)
    if path.is_dir():
        return "folder", path, None
    if not path.exists():
        raise ValueError(f"crawl source not found: {source} (expected {ACCEPTED})")
    try:
        fmt = sniff(path)
    except OSError as exc:
        raise ValueError(f"crawl source {source}: cannot read it: {exc}") from exc
    if fmt is None:
        raise ValueError(f"crawl source {source}: unsupported file type; its first bytes are not a web archive or an "
                         f"HTML page and its name does not say; expected {ACCEPTED}")
    return "file", path, fmt


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


def _crawl_file(path: Path, fmt: FileFormat, handle: _PageHandler, counts: Counter) -> None:
    """One HTML page or archive file; a file that cannot be read is counted and named in a warning."""
    try:
        if fmt.container == "html":
            handle(Page(url=path.resolve().as_uri(), source="html", body=path.read_bytes()))
            return
        counts["archive_files"] += 1
        for page in iter_archive_pages(path, fmt, counts):
            handle(page)
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop a crawl of thousands
        log.warning("crawl: cannot read %s (%s): %s: %s", path, fmt.describe(), type(exc).__name__, exc)
        counts["files_unreadable"] += 1


def _crawl_folder(folder: Path, handle: _PageHandler, counts: Counter) -> None:
    files, skipped, unreadable = crawlable_files(folder)
    counts["files_skipped"] += skipped
    for path, exc in unreadable:
        log.warning("crawl: cannot read %s: %s", path, exc)
        counts["files_unreadable"] += 1
    if not files:
        log.warning("crawl: folder %s holds no HTML page and no WARC, WAT or ARC file (%d other files passed over, "
                    "%d unreadable)", folder, skipped, len(unreadable))
    for path, fmt in files:
        _crawl_file(path, fmt, handle, counts)


def _pages_seen(counts: Counter) -> int:
    return counts["pages"] + counts["pages_failed"]


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
        for kind, value, fmt in sources:
            before = _pages_seen(counts)
            if kind == "http":
                crawl_site(value, limits, counts, handle)
            elif kind == "folder":
                _crawl_folder(value, handle, counts)
            else:
                _crawl_file(value, fmt, handle, counts)
            if _pages_seen(counts) == before:
                counts["sources_without_pages"] += 1
                log.warning("crawl: source %s gave no pages (see the counters in the crawl summary)", value)
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
    for optional in ("pages_refused_robots", "pages_not_html"):
        if optional in counts:
            result[optional] = counts[optional]
    result["sources_without_pages"] = counts["sources_without_pages"]
    if any(kind != "http" for kind, _, _ in sources):
        result.update(files_unreadable=counts["files_unreadable"], files_skipped=counts["files_skipped"])
    if counts["archive_files"]:
        result.update({key: counts[key] for key in ARCHIVE_COUNTERS})
        result["warc_bad_record_reasons"] = bad_record_reasons(counts)
    return result
