"""Kubeflow Pipelines definitions, one file per pipeline."""
