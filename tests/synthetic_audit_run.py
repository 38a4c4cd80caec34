"""A small synthetic run folder for the audit tests: pairs, group signals, decisions and CLIP scores, written with
the real table writers. Pass rates and scores depend on the groups, so the audit has disparities to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from curate.tables import compute_uid, write_part, write_table

STEPS = ("download", "dedup", "clip_score", "language")
GENDER_WORDS = {"male": ["man", "boy", "father"], "female": ["woman", "girl", "mother"]}
PROFESSIONS = ["nurse", "nurses", "engineer", "engineers", "doctor", "teacher", "taxi driver", "policemen"]
PLACES = ["beach", "street", "market", "kitchen", "garden", "office"]
COUNTRIES = ["DE", "FR", "KE", "IN", "BR"]
COUNTRY_NAMES = {"DE": "Germany", "FR": "France", "KE": "Kenya", "IN": "India", "BR": "Brazil"}


def make_frames(n: int = 3000, seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    gender = rng.choice(["male", "female", "both", "none"], size=n, p=[0.35, 0.3, 0.05, 0.3])
    country = rng.choice(COUNTRIES + [None], size=n, p=[0.3, 0.2, 0.15, 0.15, 0.05, 0.15])
    url_cc = np.where(rng.random(n) < 0.7, country, rng.choice(COUNTRIES, size=n))
    url_cc = np.where(rng.random(n) < 0.2, None, url_cc)
    caption_cc = np.where(rng.random(n) < 0.5, country, None)
    page_cc = np.where(rng.random(n) < 0.3, rng.choice(COUNTRIES, size=n), None)
    captions = []
    for g, place_cc in zip(gender, caption_cc):
        words = []
        if g in ("male", "both"):
            words.append(rng.choice(GENDER_WORDS["male"]))
        if g in ("female", "both"):
            words.append(rng.choice(GENDER_WORDS["female"]))
        if rng.random() < 0.5:
            # nurses lean female, engineers male: the nPMI difference should see it
            pool = PROFESSIONS[:2] if g == "female" and rng.random() < 0.6 else PROFESSIONS
            words.append(rng.choice(pool))
        words.append("at the " + rng.choice(PLACES))
        if place_cc is not None:
            words.append("in " + COUNTRY_NAMES[place_cc])
        captions.append("A " + " ".join(words))
    captions[5] = None  # a pair without caption
    # the image's and the page's domains carry the ccTLD signals (".com" where there is none)
    urls = [f"http://img{i}.example.{(cc or 'com').lower()}/{i}.jpg" for i, cc in enumerate(url_cc)]
    page_urls = [f"http://news.example.{(cc or 'com').lower()}/p{i}.html" for i, cc in enumerate(page_cc)]
    uids = [compute_uid(u, c) for u, c in zip(urls, captions)]
    language = rng.choice(["en", "de", "sw"], size=n, p=[0.7, 0.2, 0.1])
    groups = pd.DataFrame({
        "uid": uids, "gender_terms": gender, "country": country, "country_source": np.where(
            pd.isna(country), None, "caption"), "language": language,
        "url_cctld_country": url_cc, "page_cctld_country": page_cc, "caption_country": caption_cc,
    })

    download = rng.random(n) < 0.9
    dedup = rng.random(n) < 0.95
    # the CLIP step drops more of Kenya and of "none" captions; the language step drops non-English rows
    score = rng.normal(0.3, 0.05, n) - 0.06 * (country == "KE") - 0.02 * (gender == "none")
    score = score.astype(np.float32)
    clip_pass = score >= 0.27
    lang_pass = (language == "en") | (rng.random(n) < 0.3)
    passes = {"download": download, "dedup": dedup, "clip_score": clip_pass, "language": lang_pass}
    kept = np.logical_and.reduce([passes[s] for s in STEPS])
    dropped_by = [next((s for s in STEPS if not passes[s][i]), None) for i in range(n)]
    decisions = pd.DataFrame({"uid": uids, **{f"pass_{s}": passes[s] for s in STEPS}, "kept": kept,
                              "dropped_by": dropped_by, "reason": [None if d is None else f"{d} failed" for d in dropped_by]})
    clip = pd.DataFrame({"uid": uids, "clip_score": score, "model": "tiny-test"}).loc[download].reset_index(drop=True)
    # two scored rows share a score, so the sweep's tie-break by uid matters
    clip.loc[1, "clip_score"] = clip.loc[0, "clip_score"]
    pairs = pd.DataFrame({"uid": uids, "url": urls, "caption": captions, "page_url": page_urls, "source": "ingest"})
    return {"pairs": pairs, "groups": groups, "decisions": decisions, "clip": clip}


def write_run(run_dir: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """Folder tables in two parts (so readers must concatenate), decisions as its single file."""
    for name in ("pairs", "groups", "clip"):
        frame = frames[name]
        half = len(frame) // 2
        for part, chunk in enumerate((frame.iloc[:half], frame.iloc[half:])):
            write_part(run_dir, name, part, pa.Table.from_pandas(chunk.reset_index(drop=True), preserve_index=False))
    write_table(run_dir, "decisions", pa.Table.from_pandas(frames["decisions"], preserve_index=False))
    return run_dir
