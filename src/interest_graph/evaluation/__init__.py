"""Evaluation: the protocols of EVALUATION.md, ranking metrics and baselines."""
