"""Test support for dedup: synthetic runs with chosen pHashes, an independent brute-force oracle of signals/dedup,
and test-only engines (shuffled order, a process pool) that run items the way a real engine may."""

from __future__ import annotations

import concurrent.futures
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate import schemas, tables
from curate.dedup.phash import phash_tasks

REAL_MODEL = "ViT-B-32 laion2b_s34b_b79k"


@dataclass
class Row:
    url: str
    caption: str
    phash: Optional[int]  # None: the image did not decode
    sha256: Optional[str] = None  # None: filled by the stage from the image bytes
    image: Optional[bytes] = b"img"
    status: str = schemas.STATUS_SUCCESS
    clip: Optional[float] = None
    embedding: Optional[np.ndarray] = None

    @property
    def uid(self) -> str:
        return tables.compute_uid(self.url, self.caption)

    @property
    def success(self) -> bool:
        return self.status == schemas.STATUS_SUCCESS


def sha_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def flip(rng: np.random.Generator, value: int, n_bits: int) -> int:
    for bit in rng.choice(64, size=n_bits, replace=False):
        value ^= 1 << int(bit)
    return value


def synthetic_rows(seed: int = 0, n: int = 900, max_distance: int = 4, dim: int = 24) -> list[Row]:
    """Random distinct images plus planted duplicates of every kind, chains (a~b~c with a, c too far apart),
    identical pHashes, failed downloads, undecodable images, repeated uids, clip ties and missing scores."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for i in range(n):
        image = f"bytes {seed} {i}".encode()
        rows.append(Row(url=f"http://img.test/{seed}/{i}.jpg", caption=f"photo {i}",
                        phash=int(rng.integers(0, 2**64, dtype=np.uint64)), sha256=sha_of(image), image=image))
    pick = lambda: rows[int(rng.integers(0, n))]  # noqa: E731
    for j in range(60):  # near duplicates at 0..d+2 bits (some just past the limit)
        src = pick()
        rows.append(Row(url=f"http://near.test/{j}", caption="near", sha256=sha_of(b"near%d" % j),
                        phash=flip(rng, src.phash, int(rng.integers(0, max_distance + 3)))))
    for j in range(25):  # chains: each step within d, the ends not
        a = pick()
        b = flip(rng, a.phash, max_distance)
        rows.append(Row(url=f"http://chain.test/{j}/b", caption="b", phash=b, sha256=sha_of(b"b%d" % j)))
        rows.append(Row(url=f"http://chain.test/{j}/c", caption="c", phash=flip(rng, b, max_distance),
                        sha256=sha_of(b"c%d" % j)))
    for j in range(30):  # same bytes: sha256 given, or null and filled by the stage from the image bytes
        src = pick()
        rows.append(Row(url=f"http://copy.test/{j}", caption="copy", phash=int(rng.integers(0, 2**63)),
                        sha256=None if j % 2 == 0 else src.sha256, image=src.image))
    for j in range(30):  # same URL, another caption (another uid)
        src = pick()
        image = f"u{j}".encode()
        rows.append(Row(url=src.url, caption=f"again {j}", phash=int(rng.integers(0, 2**63)), sha256=sha_of(image),
                        image=image))
    for j in range(5):  # a repeated uid: the same url and caption, the same image
        src = pick()
        rows.append(Row(url=src.url, caption=src.caption, phash=src.phash, sha256=src.sha256, image=src.image))
    for j in range(20):  # failed downloads, some sharing a URL with a success
        rows.append(Row(url=pick().url if j % 2 else f"http://gone.test/{j}", caption=f"gone {j}", phash=None,
                        sha256=None, image=None, status=schemas.STATUS_FAILED_DOWNLOAD))
    for j in range(15):  # undecodable images (null pHash), some still exact copies
        src = pick()
        rows.append(Row(url=f"http://broken.test/{j}", caption="broken", phash=None,
                        sha256=src.sha256 if j % 3 == 0 else sha_of(b"broken%d" % j), image=b"?"))
    for row in rows:
        if row.success:
            row.clip = None if rng.random() < 0.1 else round(float(rng.random()), 1)  # ties are common
            row.embedding = rng.normal(size=dim)
    for j in range(20):  # semantic twins: identical or almost identical embeddings
        a, b = pick(), rows[int(rng.integers(0, len(rows)))]
        if a.success and b.success and a is not b:
            b.embedding = a.embedding + (0 if j % 2 else rng.normal(scale=1e-3, size=dim))
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def write_run(run: Path, rows: list[Row], sizes: list[int], names: Optional[list[str]] = None, *,
              clip: bool = False, embeddings_parts: int = 0, model: str = REAL_MODEL) -> None:
    """Shards parts of the given sizes (and names), phash parts recorded as the stage would (current lineage), and
    optionally signals/clip (one part) and signals/embeddings (parts cut independently of shards)."""
    assert sum(sizes) == len(rows)
    names = names or [tables.part_name(i) for i in range(len(sizes))]
    start = 0
    by_name = {}
    for name, size in zip(names, sizes):
        chunk = rows[start : start + size]
        start += size
        by_name[name] = chunk
        records = [{"uid": r.uid, "url": r.url, "caption": r.caption, "status": r.status,
                    "error_message": None if r.success else "HTTP 404", "image": r.image, "width": None,
                    "height": None, "original_width": None, "original_height": None, "sha256": r.sha256}
                   for r in chunk]
        tables.write_part(run, "shards", name, pa.Table.from_pylist(records, schema=schemas.SHARDS))
    todo, _ = phash_tasks(run)
    for task in todo:
        chunk = [r for r in by_name[task.name] if r.success]
        task.write(pa.table({"uid": pa.array([r.uid for r in chunk], pa.string()),
                             "phash": pa.array([r.phash for r in chunk], pa.uint64())}, schema=schemas.PHASH))
    success = [r for r in rows if r.success]
    if clip:
        scored = [r for r in success if r.clip is not None]
        tables.write_table(run, "clip", pa.table({
            "uid": [r.uid for r in scored], "clip_score": pa.array([r.clip for r in scored], pa.float32()),
            "model": [model] * len(scored)}, schema=schemas.CLIP))
    if embeddings_parts:
        seen, emb = set(), []
        for r in success:  # one embedding per uid, as the score stage writes for a uid's first row
            if r.uid not in seen:
                seen.add(r.uid)
                emb.append(r)
        for i, chunk in enumerate(np.array_split(np.arange(len(emb)), embeddings_parts)):
            vectors = [emb[j].embedding.astype(np.float16).tolist() for j in chunk]
            tables.write_part(run, "embeddings", i, pa.table({
                "uid": [emb[j].uid for j in chunk], "image_embedding": vectors, "text_embedding": vectors},
                schema=schemas.EMBEDDINGS))


def _components(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    e = np.array(edges, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def expected_dedup(rows: list[Row], max_distance: int, *, clip: bool = False, semantic_threshold: Optional[float] = None,
                   eval_hashes: Optional[dict[str, int]] = None, eval_distance: Optional[int] = None) -> list[tuple]:
    """signals/dedup by brute force over all pairs and scipy components, as sorted row tuples
    (uid, dup_of, dup_kind, cluster_size, phash_distance, eval_match). `rows` in part-name order."""
    ok = [r for r in rows if r.success]
    n = len(ok)
    sha = [r.sha256 or hashlib.sha256(r.image).hexdigest() for r in ok]
    kinds: dict[str, list] = {"url": [], "sha256": [], "phash": [], "semantic": []}
    vectors = None
    if semantic_threshold is not None:
        first = {}
        for r in ok:
            first.setdefault(r.uid, r.embedding.astype(np.float16).astype(np.float64))
        vectors = np.array([first[r.uid] for r in ok])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cos = vectors @ vectors.T
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)

    def equal(values: list) -> np.ndarray:
        codes = pd.factorize(pd.Series(values, dtype=object))[0]
        return (codes[:, None] == codes[None, :]) & upper

    kinds["url"] = np.argwhere(equal([r.url for r in ok])).tolist()
    kinds["sha256"] = np.argwhere(equal(sha)).tolist()
    has = np.array([r.phash is not None for r in ok])
    hashes = np.array([r.phash or 0 for r in ok], dtype=np.uint64)
    xor = (hashes[:, None] ^ hashes[None, :]).astype(">u8").view(np.uint8).reshape(n, n, 8)
    bits = np.unpackbits(xor, axis=2).sum(axis=2)  # popcount, independently of the code under test
    kinds["phash"] = np.argwhere((bits <= max_distance) & has[:, None] & has[None, :] & upper).tolist()
    if vectors is not None:
        same_uid = equal([r.uid for r in ok])
        kinds["semantic"] = np.argwhere((cos >= semantic_threshold) & upper & ~same_uid).tolist()
    labels, edges = [], []
    for kind in kinds:
        edges += kinds[kind]
        labels.append(_components(n, edges))
    final = labels[-1]

    eval_match: list[Optional[tuple[int, str]]] = [None] * n
    if eval_hashes:
        for i, r in enumerate(ok):
            if r.phash is None:
                continue
            near = sorted((bin(r.phash ^ h).count("1"), name) for name, h in eval_hashes.items())
            if near[0][0] <= eval_distance:
                eval_match[i] = near[0]

    best_clip: dict[str, float] = {}  # signals/clip is keyed by uid: a repeated uid has its highest score
    for r in ok:
        if r.clip is not None:
            best_clip[r.uid] = max(r.clip, best_clip.get(r.uid, -1.0))

    def preference(i: int):
        score = best_clip.get(ok[i].uid) if clip else None
        return (eval_match[i] is not None, -score if score is not None else float("inf") if clip else 0.0, ok[i].uid, i)

    rep_of = {}
    for i in sorted(range(n), key=preference):
        rep_of.setdefault(final[i], i)
    sizes = np.bincount(final)
    out = []
    for i, r in enumerate(ok):
        rep = rep_of[final[i]]
        kind = dup_of = distance = None
        if rep != i:
            dup_of = ok[rep].uid
            kind = next(k for k, lab in zip(kinds, labels) if lab[i] == lab[rep])
            if r.phash is not None and ok[rep].phash is not None:
                distance = bin(r.phash ^ ok[rep].phash).count("1")
        match = None
        if eval_match[i] is not None:
            kind, distance, match = "eval_set", eval_match[i][0], eval_match[i][1]
        out.append((r.uid, dup_of, kind, int(sizes[final[i]]), distance, match))
    out += [(r.uid, None, None, None, None, None) for r in rows if not r.success]
    return sorted(out, key=repr)


def dedup_tuples(run: Path) -> list[tuple]:
    table = tables.read_table(run, "dedup", columns=["uid", "dup_of", "dup_kind", "cluster_size", "phash_distance",
                                                      "eval_match"])
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


def shuffled_map(fn, items, *, desc="", setup=None, resources=None, seed: int = 7) -> list:
    """A test engine: runs items in a random order, returns results in item order (as engines must)."""
    order = list(range(len(items)))
    random.Random(seed + len(items)).shuffle(order)
    state = setup() if setup is not None and items else None
    results = {}
    for i in order:
        results[i] = fn(items[i], state) if setup is not None else fn(items[i])
    return [results[i] for i in range(len(items))]


def _call_with_setup(fn, setup, item):
    return fn(item, setup())


def process_pool_map(fn, items, *, desc="", setup=None, resources=None) -> list:
    """A test engine: a pool of 2 processes (items and functions must pickle)."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        if setup is None:
            return list(pool.map(fn, items))
        return list(pool.map(_call_with_setup, [fn] * len(items), [setup] * len(items), items))


@dataclass
class RecordingMap:
    """A serial engine that records which stage functions it ran and on how many items."""

    calls: list = field(default_factory=list)

    def __call__(self, fn, items, *, desc="", setup=None, resources=None) -> list:
        self.calls.append((fn.__name__, len(items)))
        return [fn(item, setup()) if setup is not None else fn(item) for item in items]

    def count(self, name: str) -> int:
        return sum(n for f, n in self.calls if f == name)
