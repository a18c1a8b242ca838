"""Kubeflow Pipelines plumbing: loading the pipeline definitions, local runs
(``kfp.local``), compile/submit/schedule against a cluster, and what a step
writes into its output artifacts."""
