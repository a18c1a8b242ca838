"""Hot reload: follow the registry alias and swap in each new version whole.

A daemon thread asks the registry which version the alias points at (one cheap
call per poll). When it moved, the new version is downloaded and built in that
thread while the old one keeps answering; then the predictor's reference is
swapped. A version that fails to load is logged and retried at the next poll;
the old one stays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from interest_graph.logs import get_logger
from interest_graph.serving.model import ServingModel

log = get_logger("serving.reload")


class Swappable(Protocol):
    serving: ServingModel | None

    def swap(self, serving: ServingModel) -> None: ...


class HotReloader:
    """Polls ``current_version`` and loads what it names when it changes.

    Attributes:
        last_error: why the last load failed (None after a success).
    """

    def __init__(
        self,
        predictor: Swappable,
        current_version: Callable[[], str | None],
        load_version: Callable[[str], ServingModel],
        poll_seconds: float,
    ) -> None:
        self.predictor = predictor
        self.current_version = current_version
        self.load_version = load_version
        self.poll_seconds = poll_seconds
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One poll: load and swap if the version moved. True when swapped."""
        try:
            version = self.current_version()
        except Exception as exc:  # a registry hiccup must not stop the server
            self.last_error = f"cannot read the alias: {exc}"
            log.warning(self.last_error)
            return False
        serving = self.predictor.serving
        if version is None or (serving is not None and serving.version == version):
            return False
        log.info("model version %s is out; loading it in the background", version)
        try:
            fresh = self.load_version(version)
        except Exception as exc:  # keep answering with the old version
            self.last_error = f"version {version} failed to load: {exc}"
            log.error(self.last_error)
            return False
        self.predictor.swap(fresh)
        self.last_error = None
        log.info("now serving model version %s", version)
        return True

    def start(self) -> None:
        """Poll in a daemon thread until :meth:`stop`."""
        if self._thread is not None or self.poll_seconds <= 0:
            return
        self._thread = threading.Thread(
            target=self._run, name="hot-reload", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()
