"""Duplicate clusters: connected components of duplicate links, added kind by kind in order of precedence.

Links of each kind (url, sha256, phash, semantic) are added to one graph in that order. The clusters are the
components of the full graph; each has one representative, and every other member records the first kind whose
links (together with the stronger kinds before it) join it to the representative — e.g. an image whose URL repeats
the representative's is a "url" duplicate even if its pHash matches too.

The graph holds only rows that have a link (curate.dedup.global_step compacts their ids to 0..n-1), so memory is
proportional to the links and the rows they touch: per link ~16 bytes per kind up to it (scipy's CSR of the
cumulative graph), per row ~40 bytes (labels, sort keys, results).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def star_links(keys: pd.Series | np.ndarray) -> np.ndarray:
    """Links (first row of a group, other row) for rows sharing a non-null key; (m, 2) int64."""
    codes, _ = pd.factorize(pd.Series(keys), use_na_sentinel=True)
    rows = np.flatnonzero(codes >= 0)
    if rows.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    first_of_code = np.full(codes.max() + 1, -1, dtype=np.int64)
    # rows are ascending, so assigning in reverse leaves each code's first row
    first_of_code[codes[rows[::-1]]] = rows[::-1]
    heads = first_of_code[codes[rows]]
    others = heads != rows
    return np.stack([heads[others], rows[others]], axis=1)


def components(n: int, links: list[np.ndarray]) -> np.ndarray:
    """Component label of each of n nodes under the given links."""
    edges = np.concatenate(links) if links else np.empty((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


@dataclass
class Clusters:
    representative: np.ndarray  # row index of each row's representative (itself when it is one)
    kind: np.ndarray  # int8: index (in links_by_kind order) of the kind joining a row to its representative, -1 for
    # representatives
    size: np.ndarray  # size of each row's cluster


def cluster(n: int, links_by_kind: dict[str, np.ndarray], preference: list[np.ndarray]) -> Clusters:
    """Cluster n rows under links given kind by kind, in order of precedence (dict order).

    `preference`: sort keys, most significant first (as np.lexsort takes them reversed); the row sorting first in a
    cluster is its representative — callers append a unique key (e.g. uid rank) so the choice is deterministic.
    """
    cumulative: list[np.ndarray] = []
    labels_by_kind: list[tuple[str, np.ndarray]] = []
    for kind, links in links_by_kind.items():
        cumulative.append(np.asarray(links, dtype=np.int32 if n < 2**31 else np.int64).reshape(-1, 2))
        labels_by_kind.append((kind, components(n, cumulative)))
    final = labels_by_kind[-1][1] if labels_by_kind else np.arange(n)

    order = np.lexsort(tuple(reversed(preference)) + (final,))
    first_in_cluster = np.ones(n, dtype=bool)
    first_in_cluster[1:] = final[order[1:]] != final[order[:-1]]
    rep_of_label = np.empty(final.max() + 1 if n else 0, dtype=np.int64)
    rep_of_label[final[order[first_in_cluster]]] = order[first_in_cluster]
    representative = rep_of_label[final] if n else np.empty(0, dtype=np.int64)

    kind = np.full(n, -1, dtype=np.int8)
    undecided = representative != np.arange(n)
    for index, (_, labels) in enumerate(labels_by_kind):
        joined = undecided & (labels == labels[representative])
        kind[joined] = index
        undecided &= ~joined
    size = np.bincount(final)[final] if n else np.empty(0, dtype=np.int64)
    return Clusters(representative=representative, kind=kind, size=size)
