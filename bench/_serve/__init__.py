"""Pieces of ``bench/serve.py``: models, processes, the floor and the load generator.

Each module runs in the bench's own process or, for ``load`` and ``floor``, as a
child process of its own (``python -m _serve.load`` / ``python -m _serve.floor``
with ``bench/`` on ``PYTHONPATH``), so that the load generator never shares an
interpreter with the server it measures.
"""
