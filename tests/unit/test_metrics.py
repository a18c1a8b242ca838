"""Tests of the ranking metrics against hand-computed values (LightGCN definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from interest_graph.evaluation.metrics import NO_ITEM, RankingMetrics, hits_at_k

N_ITEMS = 10


def _truth(*rows: set[int]) -> sp.csr_matrix:
    dense = np.zeros((len(rows), N_ITEMS), dtype=np.float32)
    for user, items in enumerate(rows):
        dense[user, sorted(items)] = 1.0
    return sp.csr_matrix(dense)


def _single(top: list[int], truth: set[int], k: int = 3) -> dict[str, float | int]:
    metrics = RankingMetrics(k=k, n_candidates=N_ITEMS)
    metrics.update(np.array([top]), _truth(truth))
    return metrics.compute()


def test_two_hits_of_two() -> None:
    result = _single([4, 2, 1], {1, 4})
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert result["users"] == 1
    assert result["recall@3"] == pytest.approx(1.0)
    assert result["ndcg@3"] == pytest.approx(dcg / idcg)
    assert result["ndcg@3"] == pytest.approx(0.919721, abs=1e-6)
    assert result["hit@3"] == pytest.approx(1.0)
    assert result["coverage@3"] == pytest.approx(3 / N_ITEMS)


def test_more_relevant_items_than_k() -> None:
    # Five relevant items, k = 3: recall over 5, IDCG over 3 positions only.
    result = _single([0, 6, 5], {0, 1, 2, 3, 5})
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert result["recall@3"] == pytest.approx(2 / 5)
    assert result["ndcg@3"] == pytest.approx(dcg / idcg)
    assert result["ndcg@3"] == pytest.approx(0.703918, abs=1e-6)
    assert result["hit@3"] == 1.0


def test_perfect_ranking_has_ndcg_one() -> None:
    result = _single([2, 7, 9], {2, 7, 9, 8, 1})
    assert result["ndcg@3"] == pytest.approx(1.0)
    assert result["recall@3"] == pytest.approx(3 / 5)


def test_a_miss() -> None:
    result = _single([0, 1, 2], {7})
    assert result["recall@3"] == 0.0
    assert result["ndcg@3"] == 0.0
    assert result["hit@3"] == 0.0


def test_hit_at_the_last_rank() -> None:
    result = _single([0, 1, 7], {7})
    assert result["recall@3"] == pytest.approx(1.0)
    assert result["ndcg@3"] == pytest.approx(1 / math.log2(4))
    assert result["hit@3"] == 1.0


def test_no_item_padding_is_a_miss_and_not_coverage() -> None:
    metrics = RankingMetrics(k=3, n_candidates=N_ITEMS)
    top = np.array([[5, NO_ITEM, NO_ITEM], [3, NO_ITEM, NO_ITEM]])
    metrics.update(top, _truth({3}, {3}))
    result = metrics.compute()
    assert result["users"] == 2
    assert result["recall@3"] == pytest.approx(0.5)
    assert result["ndcg@3"] == pytest.approx(0.5)
    assert result["hit@3"] == pytest.approx(0.5)
    assert result["coverage@3"] == pytest.approx(2 / N_ITEMS)  # items 5 and 3


def test_padding_never_matches_the_last_item() -> None:
    # NO_ITEM = -1 must not be read as "the last column" of the ground truth.
    metrics = RankingMetrics(k=2, n_candidates=N_ITEMS)
    metrics.update(np.array([[NO_ITEM, 0]]), _truth({N_ITEMS - 1, 0}))
    assert hits_at_k(np.array([[NO_ITEM, 0]]), _truth({N_ITEMS - 1, 0})).tolist() == [
        [False, True]
    ]
    result = metrics.compute()
    assert result["recall@2"] == pytest.approx(0.5)
    assert result["ndcg@2"] == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )


def test_means_over_users_and_batches() -> None:
    metrics = RankingMetrics(k=3, n_candidates=N_ITEMS)
    metrics.update(np.array([[4, 2, 1], [0, 1, 2]]), _truth({1, 4}, {7}))
    metrics.update(np.array([[0, 6, 5]]), _truth({0, 1, 2, 3, 5}))
    result = metrics.compute()
    ndcg = [
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)),
        0.0,
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4)),
    ]
    assert result == {
        "users": 3,
        "recall@3": pytest.approx((1.0 + 0.0 + 0.4) / 3),
        "ndcg@3": pytest.approx(sum(ndcg) / 3),
        "hit@3": pytest.approx(2 / 3),
        # {4, 2, 1} | {0, 1, 2} | {0, 6, 5} = {0, 1, 2, 4, 5, 6}
        "coverage@3": pytest.approx(6 / N_ITEMS),
    }


def test_coverage_uses_the_candidate_count() -> None:
    metrics = RankingMetrics(k=2, n_candidates=4)
    metrics.update(np.array([[0, 1], [1, 0]]), _truth({0}, {1}))
    assert metrics.compute()["coverage@2"] == pytest.approx(2 / 4)


def test_hits_at_k_matrix() -> None:
    top = np.array([[4, 2, 1], [0, 6, 5], [NO_ITEM, 7, NO_ITEM]])
    hits = hits_at_k(top, _truth({1, 4}, {0, 1, 2, 3, 5}, {7}))
    assert hits.dtype == bool
    assert hits.tolist() == [
        [True, False, True],
        [True, False, True],
        [False, True, False],
    ]


def test_user_without_relevant_items_is_an_error() -> None:
    metrics = RankingMetrics(k=3, n_candidates=N_ITEMS)
    with pytest.raises(ValueError, match="at least one relevant item"):
        metrics.update(np.array([[0, 1, 2], [0, 1, 2]]), _truth({1}, set()))


def test_wrong_width_is_an_error() -> None:
    metrics = RankingMetrics(k=3, n_candidates=N_ITEMS)
    with pytest.raises(ValueError, match="expected 3"):
        metrics.update(np.array([[0, 1]]), _truth({1}))


def test_compute_without_users_is_an_error() -> None:
    with pytest.raises(ValueError, match="no users"):
        RankingMetrics(k=3, n_candidates=N_ITEMS).compute()


def test_batch_with_only_empty_rankings_scores_zero() -> None:
    metrics = RankingMetrics(k=3, n_candidates=N_ITEMS)
    metrics.update(np.full((2, 3), NO_ITEM), _truth({1}, {2}))
    result = metrics.compute()
    assert result["recall@3"] == 0.0
    assert result["hit@3"] == 0.0
    assert result["coverage@3"] == 0.0
