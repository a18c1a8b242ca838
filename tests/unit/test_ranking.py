"""Tests of ranking (top-k, recommendation files) and of the evaluation protocols."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from interest_graph.errors import MalformedFileError
from interest_graph.evaluation.metrics import NO_ITEM
from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    cold_item_split,
    temporal_split,
)
from interest_graph.evaluation.ranking import (
    RECOMMENDATION_COLUMNS,
    read_recommendations,
    recommendation_frame,
    score_ranking,
    top_k_items,
    write_recommendations,
)
from interest_graph.schema import ShopTables, conform

# Ids that a careless CSV round trip would mangle (leading zeros, digits only).
USER_IDS = np.array(["0042", "13047", "17850"], dtype=object)
ITEM_IDS = np.array(
    ["0007", "0010", "85123A", "22752", "71053", "84029G"], dtype=object
)


def _csr(rows: list[list[int]], n_cols: int) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_cols), dtype=np.float32)
    for row, cols in enumerate(rows):
        dense[row, cols] = 1.0
    return sp.csr_matrix(dense)


def _split() -> EvaluationSplit:
    """Three users, six items; users 0 and 1 are tested; item 4 is no candidate."""
    return EvaluationSplit(
        protocol="hand-made",
        user_ids=USER_IDS,
        item_ids=ITEM_IDS,
        train=_csr([[0, 1], [2], [5]], 6),
        test_users=np.array([0, 1]),
        ground_truth=_csr([[2, 3], [0]], 6),
        candidates=np.array([True, True, True, True, False, True]),
    )


SCORES = np.array(
    [
        [9.0, 8.0, 7.0, 6.0, 10.0, 5.0],  # 0, 1 trained on; 4 is no candidate
        [1.0, 3.0, 9.0, 3.0, 9.0, 3.0],  # 2 trained on; 1, 3, 5 tie
    ],
    dtype=np.float32,
)


def test_top_k_excludes_training_items_and_non_candidates() -> None:
    items, scores = top_k_items(_split(), SCORES, np.array([0, 1]), k=3)
    assert items.tolist() == [[2, 3, 5], [1, 3, 5]]
    assert scores.tolist() == [[7.0, 6.0, 5.0], [3.0, 3.0, 3.0]]


def test_top_k_does_not_change_the_scores() -> None:
    scores = SCORES.copy()
    top_k_items(_split(), scores, np.array([0, 1]), k=3)
    np.testing.assert_array_equal(scores, SCORES)


def test_top_k_rows_follow_the_users_argument() -> None:
    items, _ = top_k_items(_split(), SCORES[::-1].copy(), np.array([1, 0]), k=3)
    # Row 0 is user 1 (trained on item 2), row 1 is user 0 (items 0 and 1).
    assert items.tolist() == [[1, 3, 5], [2, 3, 5]]


def test_top_k_accepts_a_reversed_view() -> None:
    items, _ = top_k_items(_split(), SCORES[::-1], np.array([1, 0]), k=3)
    assert items.tolist() == [[1, 3, 5], [2, 3, 5]]


def test_top_k_pads_when_fewer_candidates_than_k() -> None:
    items, scores = top_k_items(_split(), SCORES, np.array([0, 1]), k=5)
    assert items.tolist() == [[2, 3, 5, NO_ITEM, NO_ITEM], [1, 3, 5, 0, NO_ITEM]]
    assert scores[0, :3].tolist() == [7.0, 6.0, 5.0]
    assert np.isnan(scores[0, 3:]).all()
    assert np.isnan(scores[1, 4])


def test_top_k_pads_when_k_exceeds_the_catalogue() -> None:
    items, scores = top_k_items(_split(), SCORES, np.array([0, 1]), k=8)
    assert items.shape == scores.shape == (2, 8)
    assert items.tolist() == [
        [2, 3, 5] + [NO_ITEM] * 5,
        [1, 3, 5, 0] + [NO_ITEM] * 4,
    ]
    assert np.isnan(scores[:, 4:]).all()


def test_top_k_leaves_minus_infinity_unranked() -> None:
    scores = SCORES.copy()
    scores[0, 5] = -np.inf
    items, best = top_k_items(_split(), scores, np.array([0, 1]), k=3)
    assert items[0].tolist() == [2, 3, NO_ITEM]
    assert np.isnan(best[0, 2])


def test_top_k_ties_inside_the_top_are_ordered_by_item() -> None:
    split = _split()
    scores = np.zeros((2, 6), dtype=np.float32)
    scores[:, [5, 3, 2]] = 1.0
    items, _ = top_k_items(split, scores, np.array([0, 1]), k=3)
    assert items.tolist() == [[2, 3, 5], [3, 5, 0]]


def _flat_split(n_items: int) -> EvaluationSplit:
    return EvaluationSplit(
        protocol="flat",
        user_ids=np.array(["a"], dtype=object),
        item_ids=np.array([f"i{j}" for j in range(n_items)], dtype=object),
        train=sp.csr_matrix((1, n_items), dtype=np.float32),
        test_users=np.array([0]),
        ground_truth=_csr([[0]], n_items),
        candidates=np.ones(n_items, dtype=bool),
    )


def test_top_k_ties_at_the_cut_go_to_the_lower_item() -> None:
    chosen = {}
    for n_items in (20, 50, 100):
        scores = np.ones((1, n_items), dtype=np.float32)
        items, _ = top_k_items(_flat_split(n_items), scores, np.array([0]), k=3)
        chosen[n_items] = items.tolist()
    # torch 2.13 on CPU gives [[12, 13, 14]] for 20 items, for example.
    assert chosen == {n_items: [[0, 1, 2]] for n_items in (20, 50, 100)}


def test_recommendation_frame() -> None:
    split = _split()
    items, scores = top_k_items(split, SCORES, np.array([0, 1]), k=5)
    frame = recommendation_frame(split, items, scores)
    assert tuple(frame.columns) == RECOMMENDATION_COLUMNS
    assert frame.dtypes.astype(str).tolist() == ["string", "string", "int32", "float64"]
    # Unscored ranks are left out, never filled.
    assert frame[["user_id", "item_id", "rank"]].values.tolist() == [
        ["0042", "85123A", 1],
        ["0042", "22752", 2],
        ["0042", "84029G", 3],
        ["13047", "0010", 1],
        ["13047", "22752", 2],
        ["13047", "84029G", 3],
        ["13047", "0007", 4],
    ]
    assert frame["score"].tolist() == [7.0, 6.0, 5.0, 3.0, 3.0, 3.0, 1.0]


@pytest.mark.parametrize("name", ["recs.csv", "recs.parquet"])
def test_written_file_scores_like_the_matrix(tmp_path: Path, name: str) -> None:
    split = _split()
    items, scores = top_k_items(split, SCORES, split.test_users, k=3)
    path = write_recommendations(
        recommendation_frame(split, items, scores), tmp_path / "out" / name
    )
    assert path == tmp_path / "out" / name and path.is_file()
    read = read_recommendations(split, path, k=3)
    np.testing.assert_array_equal(read, items)
    expected = score_ranking(split, items)
    assert score_ranking(split, read) == expected
    # User 0: items 2, 3 of truth {2, 3}; user 1: truth {0} missed.
    assert expected == {
        "users": 2,
        "recall@3": pytest.approx(0.5),
        "ndcg@3": pytest.approx(0.5),
        "hit@3": pytest.approx(0.5),
        "coverage@3": pytest.approx(4 / 5),  # items 1, 2, 3, 5 of 5 candidates
    }


@pytest.mark.parametrize("name", ["recs.csv", "recs.parquet"])
def test_padded_ranks_round_trip(tmp_path: Path, name: str) -> None:
    split = _split()
    items, scores = top_k_items(split, SCORES, split.test_users, k=5)
    path = write_recommendations(
        recommendation_frame(split, items, scores), tmp_path / name
    )
    read = read_recommendations(split, path, k=5)
    np.testing.assert_array_equal(read, items)
    result = score_ranking(split, read)
    assert result == score_ranking(split, items)
    ndcg_1 = 1 / math.log2(5)  # its one relevant item 0 at rank 4
    assert result["recall@5"] == pytest.approx((1.0 + 1.0) / 2)
    assert result["ndcg@5"] == pytest.approx((1.0 + ndcg_1) / 2)


def _write(
    tmp_path: Path, rows: list[tuple[str, str, int]], name: str = "r.csv"
) -> Path:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])
    frame["score"] = 1.0
    return write_recommendations(frame, tmp_path / name)


def test_read_truncates_to_k_and_fills_missing_users(tmp_path: Path) -> None:
    path = _write(
        tmp_path, [("0042", "22752", 2), ("0042", "85123A", 1), ("0042", "0007", 3)]
    )
    top = read_recommendations(_split(), path, k=2)
    assert top.tolist() == [[2, 3], [NO_ITEM, NO_ITEM]]


def test_read_rejects_unknown_user(tmp_path: Path) -> None:
    path = _write(tmp_path, [("0042", "85123A", 1), ("42", "0007", 1)])
    with pytest.raises(MalformedFileError, match="not test users"):
        read_recommendations(_split(), path, k=3)


def test_read_rejects_a_user_that_is_not_tested(tmp_path: Path) -> None:
    path = _write(tmp_path, [("17850", "0007", 1)], name="r.parquet")
    with pytest.raises(MalformedFileError, match="not test users"):
        read_recommendations(_split(), path, k=3)


def test_read_rejects_unknown_item(tmp_path: Path) -> None:
    path = _write(tmp_path, [("0042", "7", 1)])
    with pytest.raises(MalformedFileError) as caught:
        read_recommendations(_split(), path, k=3)
    assert caught.value.path == str(path)
    assert "outside the split's catalogue" in caught.value.problem


def test_read_rejects_duplicate_rank(tmp_path: Path) -> None:
    path = _write(tmp_path, [("0042", "85123A", 1), ("0042", "22752", 1)])
    with pytest.raises(MalformedFileError, match="unique per user"):
        read_recommendations(_split(), path, k=3)


def test_read_rejects_rank_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, [("0042", "85123A", 0)], name="r.parquet")
    with pytest.raises(MalformedFileError, match="start at 1"):
        read_recommendations(_split(), path, k=3)


def test_read_rejects_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    pd.DataFrame({"user_id": ["0042"], "item_id": ["0007"]}).to_csv(path, index=False)
    with pytest.raises(
        MalformedFileError, match=r"missing columns \['rank', 'score'\]"
    ):
        read_recommendations(_split(), path, k=3)


def test_repeated_item_cannot_inflate_recall(tmp_path: Path) -> None:
    split = _split()
    path = _write(tmp_path, [("0042", "85123A", 1), ("0042", "85123A", 2)])
    try:
        top = read_recommendations(split, path, k=2)
    except MalformedFileError:
        return  # rejecting the file is a fine answer too
    result = score_ranking(split, top)
    # User 0 found one of its two items, user 1 nothing: (0.5 + 0) / 2.
    assert result["recall@2"] == pytest.approx(0.25)


# --- protocols ---------------------------------------------------------------

TEST_START = pd.Timestamp("2011-01-10")


def _tables(
    events: list[tuple[str, str, str]], titles: dict[str, object]
) -> ShopTables:
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")
    frame["event_type"] = "purchase"
    frame["quantity"] = 1
    frame["price"] = 1.0
    items = pd.DataFrame(
        {
            "item_id": list(titles),
            "title": list(titles.values()),
            "description": pd.NA,
            "category": pd.NA,
            "price": 1.0,
            "first_seen": pd.Timestamp("2011-01-01"),
        }
    )
    users = (
        frame.groupby("user_id")["timestamp"].min().rename("first_seen").reset_index()
    )
    users["country"] = "France"
    return ShopTables(
        events=conform(frame, "events"),
        items=conform(items, "items"),
        users=conform(users, "users"),
    )


TEMPORAL_EVENTS = [
    ("u1", "i1", "2011-01-01"),
    ("u1", "i2", "2011-01-02"),
    ("u2", "i2", "2011-01-03"),
    ("u4", "i3", "2011-01-04"),
    ("u1", "i1", "2011-01-05"),  # bought again in training
    ("u1", "i3", "2011-01-10 00:00"),  # exactly at the start: test
    ("u1", "i1", "2011-01-11"),  # bought before: not new to u1
    ("u1", "i9", "2011-01-12"),  # item unknown in training
    ("u2", "i2", "2011-01-12"),  # u2 only repeats: no test user
    ("u3", "i1", "2011-01-12"),  # user unknown in training
    ("u4", "i2", "2011-01-13"),
    ("u4", "i1", "2011-01-14"),
    ("u4", "i1", "2011-01-15"),  # the same pair twice: one relevant item
]


def _temporal() -> EvaluationSplit:
    tables = _tables(
        TEMPORAL_EVENTS,
        {"i1": "Red mug", "i2": "Blue cup", "i3": pd.NA, "i9": "Late lamp"},
    )
    return temporal_split("test-temporal", tables, TEST_START)


def test_temporal_split_exactly() -> None:
    split = _temporal()
    assert split.protocol == "test-temporal"
    assert split.user_ids.tolist() == ["u1", "u2", "u4"]
    assert split.item_ids.tolist() == ["i1", "i2", "i3"]
    assert split.train.toarray().tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert split.test_users.tolist() == [0, 2]
    assert split.ground_truth.toarray().tolist() == [[0, 0, 1], [1, 1, 0]]
    assert split.candidates.tolist() == [True, True, True]
    assert split.item_text is not None
    assert split.item_text["title"].fillna("").tolist() == ["Red mug", "Blue cup", ""]
    assert split.describe() == {
        "train_users": 3,
        "train_items": 3,
        "train_pairs": 4,
        "test_users": 2,
        "test_pairs": 3,
        "candidate_items": 3,
    }


def test_temporal_split_does_not_leak() -> None:
    split = _temporal()
    train_of_tested = split.train[split.test_users]
    assert split.ground_truth.multiply(train_of_tested).nnz == 0
    train_pairs = {
        (split.user_ids[u], split.item_ids[i])
        for u, i in zip(*split.train.nonzero(), strict=True)
    }
    before = {(u, i) for u, i, t in TEMPORAL_EVENTS if pd.Timestamp(t) < TEST_START}
    assert train_pairs == before
    truth = split.ground_truth.tocoo()
    test_pairs = {
        (split.user_ids[split.test_users[r]], split.item_ids[c])
        for r, c in zip(truth.row, truth.col, strict=True)
    }
    assert test_pairs == {("u1", "i3"), ("u4", "i1"), ("u4", "i2")}
    assert not test_pairs & train_pairs


def test_temporal_split_feeds_the_ranking() -> None:
    split = _temporal()
    scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]], dtype=np.float32)
    items, _ = top_k_items(split, scores, split.test_users, k=2)
    assert items.tolist() == [[2, NO_ITEM], [0, 1]]
    result = score_ranking(split, items)
    assert result["recall@2"] == pytest.approx(1.0)
    assert result["ndcg@2"] == pytest.approx(1.0)
    assert result["coverage@2"] == pytest.approx(1.0)


def _cold_events() -> list[tuple[str, str, str]]:
    items = [f"p{j:02d}" for j in range(10)]
    events = [("heavy", item, "2011-01-02") for item in items]  # buys every item
    events += [("pair", items[j], "2011-01-03") for j in (0, 3, 5, 7, 9)]
    events += [(f"only{j}", item, "2011-01-04") for j, item in enumerate(items)]
    events += [
        ("heavy", "late", "2011-01-11"),  # after test_start: never used
        ("only0", "p05", "2011-01-12"),
        ("newcomer", "p01", "2011-01-12"),
    ]
    return events


def test_cold_item_split() -> None:
    events = _cold_events()
    tables = _tables(events, {f"p{j:02d}": f"Product {j}" for j in range(10)})
    split = cold_item_split("test-cold", tables, TEST_START, share=0.2, seed=0)

    before = {(u, i) for u, i, t in events if pd.Timestamp(t) < TEST_START}
    assert split.item_ids.tolist() == [f"p{j:02d}" for j in range(10)]
    held = set(split.item_ids[split.candidates])
    assert len(held) == 2  # int(0.2 * 10)

    # Held-out items keep their column but not one training interaction.
    assert split.train[:, split.candidates].nnz == 0
    kept = {(u, i) for u, i in before if i not in held}
    train_pairs = {
        (split.user_ids[u], split.item_ids[i])
        for u, i in zip(*split.train.nonzero(), strict=True)
    }
    assert train_pairs == kept
    assert split.user_ids.tolist() == sorted({u for u, _ in kept})
    assert "newcomer" not in split.user_ids

    truth = split.ground_truth.tocoo()
    test_pairs = {
        (split.user_ids[split.test_users[r]], split.item_ids[c])
        for r, c in zip(truth.row, truth.col, strict=True)
    }
    users = set(split.user_ids)
    assert test_pairs == {(u, i) for u, i in before if i in held and u in users}
    assert split.ground_truth[:, ~split.candidates].nnz == 0
    assert not test_pairs & train_pairs
    # Every test user has a kept item to learn from and a held-out item to find.
    assert (np.diff(split.train[split.test_users].indptr) >= 1).all()
    assert (np.diff(split.ground_truth.indptr) >= 1).all()
    assert "heavy" in {split.user_ids[u] for u in split.test_users}
    # A user whose only item was held out is gone entirely.
    for j in range(10):
        assert (f"only{j}" in users) == (f"p{j:02d}" not in held)
    assert split.item_text is not None
    assert split.item_text["title"].tolist() == [f"Product {j}" for j in range(10)]


def test_cold_item_split_is_reproducible() -> None:
    tables = _tables(_cold_events(), {})
    first = cold_item_split("c", tables, TEST_START, share=0.3, seed=7)
    second = cold_item_split("c", tables, TEST_START, share=0.3, seed=7)
    assert first.candidates.sum() == 3
    np.testing.assert_array_equal(first.candidates, second.candidates)
    np.testing.assert_array_equal(first.test_users, second.test_users)
    assert (first.ground_truth != second.ground_truth).nnz == 0


@pytest.mark.parametrize("small_table", [0, 10**9])
def test_rank_items_matches_a_full_sort_with_many_ties(
    monkeypatch: pytest.MonkeyPatch, small_table: int
) -> None:
    from interest_graph.evaluation import ranking

    # Both ways of finding rows tied at the cut (numpy for small tables, torch
    # for large ones) must give the documented ranking.
    monkeypatch.setattr(ranking, "SMALL_TABLE", small_table)
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 6, (40, 300)).astype(np.float32)  # ties everywhere
    scores[3, :] = 2.0  # a row of one score
    scores[5, 290:] = -np.inf
    seen = (rng.integers(0, 40, 200), rng.integers(0, 300, 200))
    allowed = rng.random((40, 300)) > 0.2
    items, best = ranking.rank_items(scores, 12, seen=seen, candidates=allowed)
    masked = np.where(allowed, scores, -np.inf)
    masked[seen] = -np.inf
    for row in range(40):
        order = np.lexsort((np.arange(300), -masked[row]))[:12]
        finite = np.isfinite(masked[row, order])
        assert items[row].tolist() == np.where(finite, order, NO_ITEM).tolist()
        assert np.allclose(best[row][finite], masked[row, order][finite])


@pytest.mark.parametrize("k", [1, 12, 299, 300, 320])
def test_one_row_ranks_as_a_batch_does(k: int) -> None:
    from interest_graph.evaluation import ranking

    # A request ranks one row through its own path: the same rule as a batch
    # (ties inside the top and at the cut, -inf, candidates, seen items, k past
    # the catalogue), each row checked against a full sort too.
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 6, (30, 300)).astype(np.float32)
    scores[3, :] = 2.0
    scores[5, 200:] = -np.inf
    allowed = rng.random(300) > 0.2
    for row in range(30):
        seen_items = rng.integers(0, 300, 15)
        one = ranking.rank_items(
            scores[row : row + 1],
            k,
            seen=(np.zeros(15, np.int64), seen_items),
            candidates=allowed,
        )
        # Two copies of the row take the batch path.
        batch = ranking.rank_items(
            np.repeat(scores[row : row + 1], 2, axis=0),
            k,
            seen=(np.repeat([0, 1], 15), np.tile(seen_items, 2)),
            candidates=allowed,
        )
        masked = np.where(allowed, scores[row], -np.inf)
        masked[seen_items] = -np.inf
        order = np.lexsort((np.arange(300), -masked))[:k]
        finite = np.isfinite(masked[order])
        expected = np.where(finite, order, NO_ITEM).tolist()
        expected += [NO_ITEM] * (k - len(expected))
        assert one[0][0].tolist() == batch[0][0].tolist() == expected
        np.testing.assert_array_equal(one[1][0], batch[1][0])
