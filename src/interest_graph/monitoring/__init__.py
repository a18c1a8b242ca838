"""Drift monitoring with Evidently: features, embeddings, predictions, outcomes."""
