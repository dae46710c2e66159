"""``--features-file``: node features from a file of NodeFeature objects, reloaded on change."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from extender._util import poll_forever
from extender.nodes.model import (
    DEFAULT_INTERNER,
    DEFAULT_NFD_NAMESPACE,
    FeatureError,
    Interner,
    load_node_features,
)
from extender.nodes.store import FeatureStore

__all__ = [
    "FeaturesFileSource",
]

log = logging.getLogger(__name__)


class FeaturesFileSource:
    """``--features-file``: NodeFeature objects read from a file, reloaded when it changes.

    The file is polled (mounted ConfigMaps change by symlink swap, without inotify events):
    a changed stat triggers a read, a changed content hash a reparse. A file that cannot be
    read or parsed is logged and the last good state kept; until a first good read the
    source is not synced, so the server is not ready.
    """

    def __init__(
        self,
        store: FeatureStore,
        path: str | os.PathLike[str],
        *,
        interval: float = 2.0,
        nfd_namespace: str = DEFAULT_NFD_NAMESPACE,
        interner: Interner = DEFAULT_INTERNER,
        name: str = "features-file",
    ) -> None:
        self.path = Path(path)
        self.name = name
        self._store = store
        self._interval = interval
        self._nfd_namespace = nfd_namespace
        self._interner = interner
        self._stat: tuple[int, int, int] | None = None
        self._digest: bytes | None = None
        self._last_problem: str | None = None
        store.add_source(name)

    def poll(self) -> bool:
        """Check the file once; returns True when the store was updated. Blocking I/O."""
        try:
            stat = self.path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if key == self._stat:
                return False
            data = self.path.read_bytes()
        except OSError as err:
            self._problem(f"cannot read {self.path}: {err.strerror or err}")
            return False
        self._stat = key
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return False
        try:
            features = load_node_features(
                data, nfd_namespace=self._nfd_namespace, interner=self._interner
            )
        except FeatureError as err:
            self._problem(f"{self.path}: {err}")
            return False
        self._digest = digest
        self._last_problem = None
        self._store.replace(self.name, features)
        log.info("features file %s loaded: %d nodes", self.path, len(features))
        return True

    def _problem(self, message: str) -> None:
        if message != self._last_problem:
            state = "keeping the last good state" if self._digest else "not ready"
            log.error("features file: %s (%s)", message, state)
            self._last_problem = message

    async def run(self, *, iterations: int | None = None) -> None:
        """Poll forever (or ``iterations`` times, for tests) in a worker thread."""
        await poll_forever(
            self.poll, self._interval, f"features file {self.path}", iterations=iterations
        )
