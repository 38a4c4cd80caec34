"""The demo's web site: the bundled sample as HTML pages, with planted problems the pipeline must catch.

Planted on purpose, and listed in `planted.json` beside the pages so tests can check each one is found:
- exact duplicates (the same bytes under another file name), near duplicates (re-encoded at JPEG quality 35;
  resized to 85%), mismatched captions (captions rotated among a few images), placeholder alt texts and a data: URI
  (dropped at crawl), a broken link (404) and a non-image URL (failed downloads), and one caption that is an HTML
  injection attempt (shown as text by every viewer).
"""

from __future__ import annotations

import html
import io
import json
import shutil
from pathlib import Path

from PIL import Image

from curate.sources.html_pairs import is_placeholder_caption

SAMPLE_DIR = Path(__file__).parent / "sample"
INJECTION_CAPTION = "<img src=x onerror=alert(1)><script>alert(2)</script>"
IMAGES_PER_PAGE = 12


def load_samples(sample_dir: Path = SAMPLE_DIR) -> list[dict]:
    path = sample_dir / "samples.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"bundled sample missing: {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _reencode(src: Path, dst: Path, quality: int, scale: float = 1.0) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB")
        if scale != 1.0:
            im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
    dst.write_bytes(buf.getvalue())


def _img_tag(src: str, alt: str | None, extra: str = "") -> str:
    alt_attr = "" if alt is None else f' alt="{html.escape(alt, quote=True)}"'
    return f'<img src="{html.escape(src, quote=True)}"{alt_attr}{extra}>'


def build_site(site_dir: Path, sample_dir: Path = SAMPLE_DIR) -> dict:
    """Write pages + images into site_dir; returns what was planted (also saved as planted.json)."""
    samples = load_samples(sample_dir)
    if site_dir.exists():
        shutil.rmtree(site_dir)
    img_dir = site_dir / "img"
    img_dir.mkdir(parents=True)
    entries: list[tuple[str, str]] = []  # (image path relative to site, caption)
    # a few real titles are camera file names ("DSC_2481"); the crawl rightly drops those, so leave them out
    samples = [s for s in samples if not is_placeholder_caption(s["alt_text"])]
    for s in samples:
        name = Path(s["file"]).name
        shutil.copyfile(sample_dir / s["file"], img_dir / name)
        entries.append((f"img/{name}", s["alt_text"]))

    planted: dict[str, list] = {"exact_duplicates": [], "near_duplicates": [], "mismatched": [], "dropped_at_crawl": [],
                                "failed_downloads": [], "injection": []}
    # exact duplicates: same bytes, new name, a different (real) caption so the uid differs
    for i in (0, 1):
        src_rel, caption = entries[i]
        dup = f"img/copy_{Path(src_rel).name}"
        shutil.copyfile(site_dir / src_rel, site_dir / dup)
        entries.append((dup, caption + " (copy)"))
        planted["exact_duplicates"].append([src_rel, dup])
    # near duplicates: re-encoded at another quality, and resized
    for i, (quality, scale) in zip((2, 3), ((35, 1.0), (90, 0.85))):
        src_rel, caption = entries[i]
        near = f"img/near_{Path(src_rel).name}"
        _reencode(site_dir / src_rel, site_dir / near, quality, scale)
        entries.append((near, caption + " (re-encoded)"))
        planted["near_duplicates"].append([src_rel, near])
    # mismatched captions: rotate the captions of four images
    rot = [10, 11, 12, 13]
    caps = [entries[i][1] for i in rot]
    for k, i in enumerate(rot):
        entries[i] = (entries[i][0], caps[(k + 1) % len(caps)])
        planted["mismatched"].append(entries[i][0])
    # the injection attempt rides on a real image
    inj_img = "img/inj_" + Path(entries[20][0]).name
    _reencode(site_dir / entries[20][0], site_dir / inj_img, 80, 0.9)
    entries.append((inj_img, INJECTION_CAPTION))
    planted["injection"].append(inj_img)

    pages: list[str] = []
    for start in range(0, len(entries), IMAGES_PER_PAGE):
        chunk = entries[start:start + IMAGES_PER_PAGE]
        page = f"page{len(pages) + 1:02d}.html"
        figures = []
        for j, (src, caption) in enumerate(chunk):
            # relative links resolve against <base>, and some captions come from <figcaption> to exercise fallbacks
            rel = "../" + src if j % 2 else "/" + src
            if j % 5 == 4:
                figures.append(f"<figure>{_img_tag(rel, '')}<figcaption>{html.escape(caption)}</figcaption></figure>")
            else:
                figures.append(f"<figure>{_img_tag(rel, caption)}</figure>")
        if len(pages) == 0:
            figures.append(_img_tag("/img/logo.png", "logo"))
            figures.append(_img_tag("data:image/png;base64,iVBORw0KGgo=", "inline pixel"))
            figures.append(_img_tag("/img/IMG_1234.jpg", "IMG_1234.jpg"))
            planted["dropped_at_crawl"] += ["logo", "data: URI", "IMG_1234.jpg"]
        if len(pages) == 1:
            figures.append(_img_tag("/status/404/missing.jpg", "A photograph that has gone missing from the server"))
            figures.append(_img_tag("/as/text~html/page01.html", "A web page pretending to be a picture of a lighthouse"))
            planted["failed_downloads"] += ["/status/404/missing.jpg", "/as/text~html/page01.html"]
        body = "\n".join(figures)
        nav = '<a href="index.html">index</a>'
        (site_dir / "pages").mkdir(exist_ok=True)
        (site_dir / "pages" / page).write_text(
            f'<!doctype html><html><head><meta charset="utf-8"><base href="/pages/"><title>fairsift sample {page}'
            f"</title></head><body>{nav}\n{body}\n</body></html>\n", encoding="utf-8")
        pages.append(page)
    links = "\n".join(f'<li><a href="{p}">{p}</a></li>' for p in pages)
    (site_dir / "pages" / "index.html").write_text(
        f'<!doctype html><html><head><meta charset="utf-8"><title>fairsift sample</title></head><body><ul>{links}'
        "</ul></body></html>\n", encoding="utf-8")
    planted["pages"] = pages
    planted["images"] = len(entries)
    (site_dir / "planted.json").write_text(json.dumps(planted, indent=1))
    return planted
