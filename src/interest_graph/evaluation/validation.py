"""Validation splits carved out of a split's training data, for model selection.

Hyperparameters and early stopping are chosen on these, never on the test users'
ground truth. A validation split keeps the parent's user and item index, so what is
tuned on it transfers to the parent unchanged.

- Cold-item protocols (``candidates`` is not every item): a share of the warm items
  becomes pseudo-cold, exactly as the protocol held out the real cold items.
- Splits with timestamped ``train_events``: the last ``days`` of training are the
  validation period (EVALUATION.md: the 30 days before the test start).
- Otherwise (Gowalla): a random share of each user's training items is held out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from interest_graph.evaluation.protocols import EvaluationSplit, binary_matrix

VALIDATION_DAYS = 30.0
VALIDATION_SHARE = 0.2
# Below this many users NDCG moves by chance from one epoch to the next, and early
# stopping ends at whichever epoch happened to be lucky.
MIN_VALIDATION_USERS = 100


def _assemble(
    split: EvaluationSplit,
    train: sp.csr_matrix,
    truth: sp.csr_matrix,
    candidates: np.ndarray,
    train_events: pd.DataFrame | None,
    test_start: pd.Timestamp | None,
) -> EvaluationSplit:
    test_users = np.flatnonzero(np.diff(truth.indptr) > 0)
    return EvaluationSplit(
        protocol=f"{split.protocol}/validation",
        user_ids=split.user_ids,
        item_ids=split.item_ids,
        train=train,
        test_users=test_users,
        ground_truth=truth[test_users],
        candidates=candidates,
        item_text=split.item_text,
        item_titles=split.item_titles,
        train_events=train_events,
        test_start=test_start,
    )


def _cold_items(split: EvaluationSplit, share: float, seed: int) -> EvaluationSplit:
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    warm = np.flatnonzero(popularity > 0)
    rng = np.random.default_rng(seed)
    pseudo_cold = np.zeros(split.n_items, dtype=bool)
    pseudo_cold[rng.choice(warm, int(share * warm.size), replace=False)] = True
    coo = split.train.tocoo()
    held = pseudo_cold[coo.col]
    train = binary_matrix(coo.row[~held], coo.col[~held], split.train.shape)
    truth = binary_matrix(coo.row[held], coo.col[held], split.train.shape)
    # Like the protocol: a test user needs at least one kept item to go on.
    has_kept = np.diff(train.indptr) > 0
    truth = sp.diags(has_kept.astype(np.float32)) @ truth
    truth.eliminate_zeros()
    events = split.train_events
    if events is not None:
        events = events[~pseudo_cold[events["item"].to_numpy()]]
    return _assemble(
        split, train.tocsr(), truth.tocsr(), pseudo_cold, events, split.test_start
    )


def _last_days(split: EvaluationSplit, days: float) -> EvaluationSplit:
    events = split.train_events
    assert events is not None
    early = events["days_before"].to_numpy() > days
    before, after = events[early], events[~early]
    train = binary_matrix(
        before["user"].to_numpy(), before["item"].to_numpy(), split.train.shape
    )
    recent = binary_matrix(
        after["user"].to_numpy(), after["item"].to_numpy(), split.train.shape
    )
    known = np.asarray(train.sum(axis=0)).ravel() > 0
    has_history = np.diff(train.indptr) > 0
    # Ground truth like the test period: new to the user, known in training.
    truth = recent - recent.multiply(train)
    truth = (
        sp.diags(has_history.astype(np.float32))
        @ truth
        @ sp.diags(known.astype(np.float32))
    )
    truth.eliminate_zeros()
    shifted = before.assign(days_before=before["days_before"] - days)
    start = (
        None if split.test_start is None else split.test_start - pd.Timedelta(days=days)
    )
    return _assemble(split, train.tocsr(), truth.tocsr(), known, shifted, start)


def _random_share(split: EvaluationSplit, share: float, seed: int) -> EvaluationSplit:
    coo = split.train.tocoo()
    rng = np.random.default_rng(seed)
    held = rng.random(coo.nnz) < share
    # Every user keeps at least one training item.
    order = np.lexsort((~held, coo.row))
    first_of_user = np.r_[True, coo.row[order][1:] != coo.row[order][:-1]]
    held[order[first_of_user]] = False
    train = binary_matrix(coo.row[~held], coo.col[~held], split.train.shape)
    truth = binary_matrix(coo.row[held], coo.col[held], split.train.shape)
    candidates = np.ones(split.n_items, dtype=bool)
    return _assemble(split, train, truth, candidates, None, split.test_start)


def validation_split(
    split: EvaluationSplit,
    seed: int = 0,
    share: float = VALIDATION_SHARE,
    days: float = VALIDATION_DAYS,
) -> EvaluationSplit:
    """A validation split built only from ``split.train`` (see the module notes)."""
    if not split.candidates.all():
        return _cold_items(split, share, seed)
    if split.train_events is not None:
        return _last_days(split, days)
    return _random_share(split, share, seed)


def too_small_to_early_stop(validation: EvaluationSplit) -> str | None:
    """Why ``validation`` is too small to early-stop on, or None when it is not."""
    users = int(validation.test_users.size)
    if users >= MIN_VALIDATION_USERS:
        return None
    pairs = int(validation.ground_truth.nnz)
    return (
        f"the validation split holds {users} users and {pairs} pairs (fewer than "
        f"{MIN_VALIDATION_USERS} users): too few to early-stop on"
    )
