"""The user interest graph: items clustered into interests, users weighted over them.

An *interest* is a cluster of items whose (L2-normalised) model vectors point the
same way. Items join their cluster with weight ``cosine(item, centroid)``; users
join their strongest interests with softmax weights over ``user · centroid``.

Everything is vectorised so that 1M users x 100k items x 64 dimensions fits in
minutes on a laptop: items are clustered once (mini-batch k-means above
:data:`MINIBATCH_FROM` items), users are scored against the few centroids in
batches of :data:`USER_BATCH`, and no users x items matrix is ever built.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from interest_graph.logs import get_logger, progress

if TYPE_CHECKING:
    from interest_graph.models.artifact import ModelArtifact

log = get_logger("interests.graph")

MAX_DEFAULT_INTERESTS = 64
MIN_DEFAULT_INTERESTS = 2
EXAMPLE_ITEMS = 5
LABEL_TERMS = 3
TOP_TERMS = 5
MAX_VOCABULARY = 50_000
MINIBATCH_FROM = 20_000
USER_BATCH = 65_536
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"  # words of three or more letters

_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class InterestGraph:
    """Users, interests and items, and the weighted edges between them.

    Row ``i`` of ``items`` (and ``users``) is row ``i`` of the item (user) vectors
    the graph was built from.

    Attributes:
        interests: one row per interest: ``interest_id`` (``interest-07``),
            ``label`` (top title terms joined by `` / ``, unique), ``size`` (items
            in the interest), ``top_terms`` (comma-joined) and ``example_items``
            (JSON list of the ids of the items closest to the centroid).
        user_interests: ``user_id``, ``interest_id``, ``weight`` (a user's weights
            sum to 1) and ``rank`` (1 = strongest); users with a zero vector have
            no rows.
        item_interests: ``item_id``, ``interest_id``, ``weight`` (cosine of the
            item to the interest centroid); items with a zero vector have no row.
        items: ``item_id`` and ``title`` (missing when unknown).
        users: ``user_id``.
        centroids: unit-length interest directions, ``n_interests x d``, in the
            order of ``interests``.
    """

    interests: pd.DataFrame
    user_interests: pd.DataFrame
    item_interests: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    centroids: np.ndarray

    @property
    def n_interests(self) -> int:
        """The number of interest nodes."""
        return len(self.interests)

    def labels(self) -> dict[str, str]:
        """Interest id to label."""
        return dict(
            zip(
                self.interests["interest_id"].astype(str),
                self.interests["label"].astype(str),
                strict=True,
            )
        )

    def user_row(self, user_id: str) -> int:
        """Row of ``user_id`` in the user vectors.

        Raises:
            KeyError: the user is not in the graph.
        """
        rows = np.flatnonzero(self.users["user_id"].to_numpy(dtype=object) == user_id)
        if len(rows) == 0:
            raise KeyError(
                f"unknown user {user_id!r}: not one of the {len(self.users)} users "
                "of the interest graph"
            )
        return int(rows[0])


def default_interest_count(n_items: int) -> int:
    """``round(sqrt(n_items / 2))`` clamped to 2..64, never more than ``n_items``.

    Args:
        n_items: the number of items to cluster.

    Returns:
        The number of interests to cluster into (0 when there are no items).
    """
    guess = round(float(np.sqrt(n_items / 2)))
    clamped = min(max(guess, MIN_DEFAULT_INTERESTS), MAX_DEFAULT_INTERESTS)
    return min(clamped, n_items)


def build_interest_graph(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    item_titles: np.ndarray | None = None,
    n_interests: int | None = None,
    top_interests_per_user: int = 5,
    seed: int = 0,
    *,
    temperature: float | None = None,
) -> InterestGraph:
    """Cluster items into interests and connect every user to their strongest ones.

    Args:
        user_vectors: ``n_users x d`` user vectors of the model.
        item_vectors: ``n_items x d`` item vectors; scores are ``user · item``.
        user_ids: id of each user row.
        item_ids: id of each item row.
        item_titles: title of each item (labels the interests); ``None`` labels
            them ``interest-NN``.
        n_interests: how many interests; default :func:`default_interest_count`
            of the items with a nonzero vector.
        top_interests_per_user: interests kept per user (their weights are
            renormalised to sum to 1).
        seed: k-means random state.
        temperature: softmax temperature of the user weights. ``None`` (default)
            divides each user's interest scores by their standard deviation, so
            the weights depend on how much the user prefers one interest over
            the others and not on the length of the user vector.

    Returns:
        The interest graph.

    Raises:
        ValueError: shapes or ids do not match, a vector is not finite, no item
            has a nonzero vector, or an argument is out of range.
    """
    users, items, titles = _check_inputs(
        user_vectors, item_vectors, user_ids, item_ids, item_titles
    )
    if top_interests_per_user < 1:
        raise ValueError("top_interests_per_user must be at least 1")
    if temperature is not None and temperature <= 0:
        raise ValueError("temperature must be positive")

    unit_items, scorable = _unit_rows(items)
    n_scorable = int(scorable.sum())
    if n_scorable == 0:
        raise ValueError("no item has a nonzero vector: nothing to cluster")
    k = default_interest_count(n_scorable) if n_interests is None else n_interests
    if not 1 <= k <= n_scorable:
        raise ValueError(
            f"n_interests must be between 1 and the {n_scorable} items with a "
            f"nonzero vector, not {k}"
        )

    rows = np.flatnonzero(scorable)
    clusters = _cluster(unit_items[rows], k, seed)
    clusters, centroids = _ordered_clusters(unit_items[rows], clusters)
    k = len(centroids)
    interest_ids = _interest_ids(k)
    log.info("clustered %d items into %d interests", n_scorable, k)

    cosine = np.einsum("ij,ij->i", unit_items[rows], centroids[clusters])
    id_array = np.asarray(item_ids, dtype=object)
    item_interests = pd.DataFrame(
        {
            "item_id": pd.array(id_array[rows], dtype="string"),
            "interest_id": pd.array(interest_ids[clusters], dtype="string"),
            "weight": cosine.astype(np.float64),
        }
    )
    terms = _cluster_terms(titles, rows, clusters, k)
    interests = _interest_table(interest_ids, clusters, cosine, id_array[rows], terms)
    user_interests = _user_interests(
        users,
        np.asarray(user_ids, dtype=object),
        centroids,
        interest_ids,
        min(top_interests_per_user, k),
        temperature,
    )
    return InterestGraph(
        interests=interests,
        user_interests=user_interests,
        item_interests=item_interests,
        items=pd.DataFrame(
            {
                "item_id": pd.array(id_array, dtype="string"),
                "title": pd.array(titles, dtype="string"),
            }
        ),
        users=pd.DataFrame(
            {"user_id": pd.array(np.asarray(user_ids, dtype=object), dtype="string")}
        ),
        centroids=centroids,
    )


def build_from_artifact(
    artifact: ModelArtifact,
    n_interests: int | None = None,
    top_interests_per_user: int = 5,
    seed: int = 0,
) -> InterestGraph:
    """:func:`build_interest_graph` on a trained model artifact.

    Args:
        artifact: the model (its user and item vectors, ids and titles).
        n_interests: how many interests (default from the item count).
        top_interests_per_user: interests kept per user.
        seed: k-means random state.

    Returns:
        The interest graph.
    """
    return build_interest_graph(
        artifact.user_vectors,
        artifact.item_vectors,
        artifact.user_ids,
        artifact.item_ids,
        artifact.item_titles,
        n_interests=n_interests,
        top_interests_per_user=top_interests_per_user,
        seed=seed,
    )


def explain_user(
    graph: InterestGraph,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    user_id: str,
    n_interests: int = 5,
    items_per_interest: int = 3,
) -> list[dict[str, Any]]:
    """A user's strongest interests and, in each, the items that score best for them.

    Args:
        graph: the interest graph built from these vectors.
        user_vectors: the user vectors the graph was built from.
        item_vectors: the item vectors the graph was built from.
        user_id: the user.
        n_interests: at most this many interests (the graph keeps
            ``top_interests_per_user``).
        items_per_interest: items listed per interest.

    Returns:
        One dict per interest, strongest first: ``interest_id``, ``label``,
        ``weight``, ``rank`` and ``items`` (dicts of ``item_id``, ``title`` and
        ``score`` = user · item, best first). Empty for a user whose vector is
        zero (the model cannot score them).

    Raises:
        KeyError: the user is not in the graph.
        ValueError: the vectors are not the ones the graph was built from.
    """
    _check_graph_vectors(graph, user_vectors, item_vectors)
    vector = np.asarray(user_vectors[graph.user_row(user_id)], dtype=np.float32)
    edges = graph.user_interests
    mine = edges[(edges["user_id"] == user_id).to_numpy(dtype=bool)]
    mine = mine.sort_values("rank").head(max(n_interests, 0))
    labels = graph.labels()
    item_ids = graph.items["item_id"].to_numpy(dtype=object)
    titles = graph.items["title"].to_numpy(dtype=object)
    members = _members_by_interest(graph)
    out = []
    for interest_id, weight, rank in zip(
        mine["interest_id"].astype(str), mine["weight"], mine["rank"], strict=True
    ):
        rows = members.get(interest_id, np.empty(0, dtype=np.int64))
        scores = np.asarray(item_vectors[rows], dtype=np.float32) @ vector
        best = np.argsort(-scores, kind="stable")[: max(items_per_interest, 0)]
        out.append(
            {
                "interest_id": interest_id,
                "label": labels[interest_id],
                "weight": float(weight),
                "rank": int(rank),
                "items": [
                    {
                        "item_id": str(item_ids[rows[i]]),
                        "title": _text_or_none(titles[rows[i]]),
                        "score": float(scores[i]),
                    }
                    for i in best
                ],
            }
        )
    return out


def feast_interest_rows(
    graph: InterestGraph,
    user_vectors: np.ndarray,
    user_ids: np.ndarray,
    event_timestamp: datetime | pd.Timestamp | str,
) -> pd.DataFrame:
    """The frame ``features.online.push_user_interests`` pushes to Feast.

    Args:
        graph: the interest graph (gives each user's top interest labels).
        user_vectors: the user vectors to serve as retrieval query vectors.
        user_ids: id of each row of ``user_vectors``.
        event_timestamp: when the vectors were computed; a naive time is UTC.

    Returns:
        ``user_id`` (string), ``interest_vector`` (a float32 array per row),
        ``top_interests`` (JSON list of interest labels, strongest first; ``[]``
        for users without interests) and ``event_timestamp`` (UTC).

    Raises:
        ValueError: ``user_ids`` does not match the rows of ``user_vectors``.
    """
    vectors = np.asarray(user_vectors, dtype=np.float32)
    ids = np.asarray(user_ids, dtype=object)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(
            f"user_vectors {vectors.shape} do not match the {len(ids)} user ids"
        )
    top = _top_labels_json(graph)
    stamp = pd.Timestamp(event_timestamp)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    stamp = stamp.tz_convert("UTC")
    user_column = pd.Series(pd.array(ids, dtype="string"))
    frame = pd.DataFrame(
        {
            "user_id": user_column,
            "interest_vector": pd.Series(list(vectors), dtype=object),
            "top_interests": user_column.map(top).fillna("[]").astype("string"),
        }
    )
    frame["event_timestamp"] = pd.Series(stamp, index=frame.index).astype(
        "datetime64[us, UTC]"
    )
    return frame


# --- inputs -----------------------------------------------------------------


def _check_inputs(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    item_titles: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users = np.asarray(user_vectors, dtype=np.float32)
    items = np.asarray(item_vectors, dtype=np.float32)
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise ValueError(
            f"user vectors {users.shape} and item vectors {items.shape} must be "
            "2-D with the same width"
        )
    for what, vectors, ids in (
        ("user", users, user_ids),
        ("item", items, item_ids),
    ):
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} {what} ids for {len(vectors)} {what} vectors")
        if not pd.Index(ids).is_unique:
            raise ValueError(f"{what} ids are not unique")
        if not np.isfinite(vectors).all():
            raise ValueError(f"{what} vectors hold NaN or infinite values")
    if item_titles is None:
        titles = np.full(len(items), None, dtype=object)
    else:
        if len(item_titles) != len(items):
            raise ValueError(f"{len(item_titles)} titles for {len(items)} items")
        titles = pd.Series(item_titles, dtype=object).to_numpy(dtype=object)
        titles[pd.isna(titles)] = None
    return users, items, titles


def _unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised rows and the mask of nonzero ones (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1)
    nonzero = norms > _EPS
    unit = np.zeros_like(vectors, dtype=np.float32)
    unit[nonzero] = vectors[nonzero] / norms[nonzero, None]
    return unit, nonzero


def _check_graph_vectors(
    graph: InterestGraph, user_vectors: np.ndarray, item_vectors: np.ndarray
) -> None:
    if len(user_vectors) != len(graph.users) or len(item_vectors) != len(graph.items):
        raise ValueError(
            f"{len(user_vectors)} user and {len(item_vectors)} item vectors, but the "
            f"graph was built from {len(graph.users)} users and "
            f"{len(graph.items)} items"
        )


# --- clustering ---------------------------------------------------------------


def _cluster(unit_items: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means cluster of each (unit) item vector."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    model: KMeans | MiniBatchKMeans
    if len(unit_items) >= MINIBATCH_FROM:
        model = MiniBatchKMeans(
            n_clusters=k, random_state=seed, n_init=3, batch_size=8192
        )
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    with warnings.catch_warnings():
        # Fewer distinct vectors than clusters: the empty ones are dropped below.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(unit_items)
    return np.asarray(labels, dtype=np.int64)


def _ordered_clusters(
    unit_items: np.ndarray, clusters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters biggest first (empty ones dropped); unit centroids."""
    counts = np.bincount(clusters)
    order = np.lexsort((np.arange(len(counts)), -counts))
    order = order[counts[order] > 0]
    renumber = np.empty(len(counts), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    clusters = renumber[clusters]
    membership = sparse.csr_matrix(
        (np.ones(len(clusters)), (clusters, np.arange(len(clusters)))),
        shape=(len(order), len(clusters)),
    )
    sums = np.asarray(membership @ unit_items.astype(np.float64))
    centroids, nonzero = _unit_rows(sums.astype(np.float32))
    if not nonzero.all():  # opposite vectors cancelled out: keep one as the centroid
        first = np.unique(clusters, return_index=True)[1]
        centroids[~nonzero] = unit_items[first[~nonzero]]
    return clusters, centroids


def _interest_ids(k: int) -> np.ndarray:
    width = max(2, len(str(k - 1)))
    return np.array([f"interest-{i:0{width}d}" for i in range(k)], dtype=object)


# --- labels -------------------------------------------------------------------


def _cluster_terms(
    titles: np.ndarray, rows: np.ndarray, clusters: np.ndarray, k: int
) -> list[list[str]]:
    """The most characteristic title terms of each cluster, best first.

    A term's score in a cluster is its mean TF-IDF over the cluster's titles minus
    its mean over all titles (IDF from all titles), so words every item shares
    score nothing; only terms scoring above zero are kept.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    known = np.array([t is not None and str(t).strip() != "" for t in titles])
    if not known.any():
        return [[] for _ in range(k)]
    vectorizer = TfidfVectorizer(
        lowercase=True,
        stop_words="english",
        token_pattern=TOKEN_PATTERN,
        max_features=MAX_VOCABULARY,
    )
    try:
        tfidf = vectorizer.fit_transform([str(t) if t else "" for t in titles])
    except ValueError:  # empty vocabulary: only stop words, digits or short words
        return [[] for _ in range(k)]
    vocabulary = vectorizer.get_feature_names_out()
    sizes = np.bincount(clusters, minlength=k)
    membership = sparse.csr_matrix(
        (1.0 / sizes[clusters], (clusters, rows)), shape=(k, len(titles))
    )
    inside = np.asarray((membership @ tfidf).todense())
    overall = np.asarray(tfidf.mean(axis=0)).ravel()
    scores = inside - overall[None, :]
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_TERMS]
    return [
        [str(vocabulary[t]) for t in ranked[c] if scores[c, t] > _EPS] for c in range(k)
    ]


def _interest_table(
    interest_ids: np.ndarray,
    clusters: np.ndarray,
    cosine: np.ndarray,
    member_ids: np.ndarray,
    terms: list[list[str]],
) -> pd.DataFrame:
    k = len(interest_ids)
    labels = [
        " / ".join(t[:LABEL_TERMS]) if t else str(interest_ids[c])
        for c, t in enumerate(terms)
    ]
    labels = _unique_labels(labels, interest_ids)
    order = np.lexsort((-cosine, clusters))
    ranked = pd.DataFrame({"cluster": clusters[order], "item": member_ids[order]})
    closest = ranked.groupby("cluster", sort=True).head(EXAMPLE_ITEMS)
    examples = closest.groupby("cluster", sort=True)["item"].agg(
        lambda ids: json.dumps([str(i) for i in ids])
    )
    return pd.DataFrame(
        {
            "interest_id": pd.array(interest_ids, dtype="string"),
            "label": pd.array(labels, dtype="string"),
            "size": np.bincount(clusters, minlength=k).astype(np.int64),
            "top_terms": pd.array([",".join(t) for t in terms], dtype="string"),
            "example_items": pd.array(
                examples.reindex(range(k), fill_value="[]").to_numpy(), dtype="string"
            ),
        }
    )


def _unique_labels(labels: list[str], interest_ids: np.ndarray) -> list[str]:
    """Suffix labels that two interests share with the interest id."""
    counts = pd.Series(labels).value_counts()
    return [
        f"{label} ({interest_ids[i]})" if counts[label] > 1 else label
        for i, label in enumerate(labels)
    ]


# --- users --------------------------------------------------------------------


def interest_weights(
    scores: np.ndarray, temperature: float | None = None
) -> np.ndarray:
    """Softmax over interests of each row of ``scores``.

    Args:
        scores: ``n_users x n_interests`` of ``user · unit centroid``.
        temperature: divide the scores by this; ``None`` divides each row by its
            standard deviation (rows without spread get uniform weights).

    Returns:
        Weights of the same shape; each row sums to 1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if temperature is None:
        spread = scores.std(axis=1, keepdims=True)
        scaled = scores / np.where(spread > _EPS, spread, 1.0)
    else:
        scaled = scores / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def _user_interests(
    users: np.ndarray,
    user_ids: np.ndarray,
    centroids: np.ndarray,
    interest_ids: np.ndarray,
    top: int,
    temperature: float | None,
) -> pd.DataFrame:
    """Each user's ``top`` interests, batch by batch; zero users are left out."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    starts = range(0, len(users), USER_BATCH)
    for start in progress(starts, desc="user interests", total=len(starts)):
        batch = users[start : start + USER_BATCH]
        keep = np.flatnonzero(np.abs(batch).max(axis=1) > 0)
        weights = interest_weights(batch[keep] @ centroids.T, temperature)
        best = np.argsort(-weights, axis=1, kind="stable")[:, :top]
        kept = np.take_along_axis(weights, best, axis=1)
        kept /= kept.sum(axis=1, keepdims=True)
        parts.append((start + keep, best, kept))
    rows = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    best = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, top), int)
    kept = np.concatenate([p[2] for p in parts]) if parts else np.empty((0, top))
    log.info("weighted %d users over their top %d interests", len(rows), top)
    return pd.DataFrame(
        {
            "user_id": pd.array(np.repeat(user_ids[rows], top), dtype="string"),
            "interest_id": pd.array(interest_ids[best.ravel()], dtype="string"),
            "weight": kept.ravel().astype(np.float64),
            "rank": np.tile(np.arange(1, top + 1, dtype=np.int64), len(rows)),
        }
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _members_by_interest(graph: InterestGraph) -> dict[str, np.ndarray]:
    """Item rows of each interest."""
    rows = pd.Index(graph.items["item_id"]).get_indexer(graph.item_interests["item_id"])
    groups = pd.Series(rows).groupby(
        graph.item_interests["interest_id"].astype(str).to_numpy()
    )
    return {str(k): v.to_numpy(dtype=np.int64) for k, v in groups}


def _top_labels_json(graph: InterestGraph) -> pd.Series:
    """User id to the JSON list of their interest labels, strongest first."""
    edges = graph.user_interests.sort_values("rank", kind="stable")
    labels = edges["interest_id"].astype(str).map(graph.labels())
    lists = labels.groupby(edges["user_id"].astype(str).to_numpy(), sort=False).agg(
        list
    )
    return lists.map(json.dumps)
