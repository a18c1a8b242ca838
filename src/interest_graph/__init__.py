"""interest_graph: a user interest graph and recommendations for an online shop.

The library holds the logic; the CLI, Kubeflow components, KServe predictor and
tests are thin callers of the stage entry functions in :mod:`interest_graph.stages`.
"""

__version__ = "0.1.0"
