"""``--spec-map FILE``: specs named by image patterns, for images without attached artifacts.

Owns :class:`SpecMapSource` (``--spec-map FILE``): a YAML list of ``{image: PATTERN, spec: PATH}``
  for images without attached artifacts and for air-gapped clusters. PATTERN is a shell-style
  glob (``fnmatch``: ``*``, ``?``, ``[...]``; ``*`` also matches ``/`` and ``:``) over the full
  image reference as written in the pod (or over the explicit reference of the pod's
  ``artifacts`` annotation); PATH is relative to the map file; the first match wins; an
  image no pattern matches has no spec. Specs are compiled once per content digest and the
  map is re-read when it or a spec file changes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from extender._util import poll_forever
from extender.artifacts.registry_source import Stat
from extender.artifacts.types import PullContext, SpecKey, SpecLookup
from extender.nfd.rules import CompiledSpec, load_spec
from extender.nfd.spec import SpecError

__all__ = [
    "SpecMap",
    "SpecMapError",
    "SpecMapSource",
]

log = logging.getLogger(__name__)

MAX_MAP_BYTES = 1 << 20


class SpecMapError(ValueError):
    """The spec map file itself cannot be used (not the specs it points to)."""


@dataclass(frozen=True, slots=True)
class SpecMapEntry:
    pattern: str
    spec_path: Path
    lookup: SpecLookup


class _SpecCache:
    """Compiled specs (or their errors) by content digest, shared across map reloads."""

    def __init__(self) -> None:
        self._by_digest: dict[bytes, CompiledSpec | SpecError] = {}

    def compile(self, data: bytes) -> CompiledSpec | SpecError:
        digest = hashlib.sha256(data).digest()
        found = self._by_digest.get(digest)
        if found is None:
            try:
                found = load_spec(data)
            except SpecError as err:
                found = err
            self._by_digest[digest] = found
        return found

    def retain(self, keep: set[bytes]) -> None:
        self._by_digest = {k: v for k, v in self._by_digest.items() if k in keep}


class SpecMap:
    """A loaded spec map: patterns in file order, each with its spec's lookup result."""

    def __init__(
        self, path: Path, entries: Sequence[SpecMapEntry], files: Sequence[tuple[Path, Stat]]
    ) -> None:
        self.path = path
        self.entries = tuple(entries)
        # Every file read, with its stat taken just before reading: a change after the
        # read then always shows as a difference.
        self.files = tuple(files)

    def changed(self) -> bool:
        return any(_stat_key(path) != stat for path, stat in self.files)

    @classmethod
    def load(cls, path: str | os.PathLike[str], cache: _SpecCache | None = None) -> SpecMap:
        """Read the map and every spec it names. Raises :class:`SpecMapError` for a bad map;
        a bad or unreadable spec file only affects the images that match its entry."""
        path = Path(path)
        cache = cache or _SpecCache()
        files: list[tuple[Path, Stat]] = [(path, _stat_key(path))]
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SpecMapError(f"cannot read spec map {path}: {err.strerror or err}") from None
        if len(data) > MAX_MAP_BYTES:
            raise SpecMapError(f"spec map {path} is larger than {MAX_MAP_BYTES} bytes")
        try:
            document = yaml.safe_load(data)
        except yaml.YAMLError as err:
            raise SpecMapError(f"spec map {path}: invalid YAML: {err}") from None
        if document is None:
            document = []
        if not isinstance(document, list):
            raise SpecMapError(f"spec map {path}: expected a list of {{image, spec}} entries")
        entries = []
        used: set[bytes] = set()
        for index, item in enumerate(document):
            pattern, spec_name = _entry_fields(item, f"spec map {path}: entry {index}")
            spec_path = (path.parent / spec_name).resolve()
            origin = f"spec-map:{spec_path}"
            files.append((spec_path, _stat_key(spec_path)))
            try:
                spec_data = spec_path.read_bytes()
            except OSError as err:
                lookup = SpecLookup.failed(
                    f"cannot read {spec_path}: {err.strerror or err}", origin
                )
            else:
                used.add(hashlib.sha256(spec_data).digest())
                compiled = cache.compile(spec_data)
                if isinstance(compiled, SpecError):
                    lookup = SpecLookup.invalid_spec(compiled, origin)
                    log.error("spec map %s: %s: invalid spec: %s", path, spec_path, compiled)
                else:
                    lookup = SpecLookup.found(compiled, origin)
            entries.append(SpecMapEntry(pattern, spec_path, lookup))
        cache.retain(used)
        return cls(path, entries, files)

    def lookup(self, reference: str) -> SpecLookup:
        for entry in self.entries:
            if fnmatch.fnmatchcase(reference, entry.pattern):
                return entry.lookup
        return SpecLookup.none()


def _entry_fields(item: Any, where: str) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise SpecMapError(f"{where}: expected a mapping {{image: PATTERN, spec: PATH}}")
    unknown = sorted(str(k) for k in item if k not in ("image", "spec"))
    if unknown:
        raise SpecMapError(f"{where}: unknown key {unknown[0]!r} (keys are image and spec)")
    pattern, spec = item.get("image"), item.get("spec")
    if not isinstance(pattern, str) or not pattern:
        raise SpecMapError(f"{where}: image must be a non-empty string pattern")
    if not isinstance(spec, str) or not spec:
        raise SpecMapError(f"{where}: spec must be a non-empty file path")
    return pattern, spec


def _stat_key(path: Path) -> Stat:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class SpecMapSource:
    """``--spec-map``: answers every lookup from memory; re-reads the map when it changes.

    The map is read when constructed (a bad map raises :class:`SpecMapError`, so ``serve``
    refuses to start). Later a bad map is logged and the previous one kept.
    """

    ready = True

    def __init__(self, path: str | os.PathLike[str], *, interval: float = 2.0) -> None:
        self.path = Path(path)
        self._interval = interval
        self._cache = _SpecCache()
        self._map = SpecMap.load(self.path, self._cache)
        self._last_problem = ""
        log.info("spec map %s loaded: %d entries", self.path, len(self._map.entries))

    @property
    def spec_map(self) -> SpecMap:
        return self._map

    def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None:
        return self._map.lookup(key.reference)

    async def load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        return self._map.lookup(key.reference)

    def reload_if_changed(self) -> bool:
        """Re-read the map if it or a spec file changed; True when a new map is in use."""
        if not self._map.changed():
            return False
        try:
            new_map = SpecMap.load(self.path, self._cache)
        except SpecMapError as err:
            if str(err) != self._last_problem:
                log.error("%s (keeping the previous spec map)", err)
                self._last_problem = str(err)
            return False
        self._last_problem = ""
        self._map = new_map
        log.info("spec map %s reloaded: %d entries", self.path, len(new_map.entries))
        return True

    async def run(self, *, iterations: int | None = None) -> None:
        """Poll for changes forever (or ``iterations`` times, for tests)."""
        await poll_forever(
            self.reload_if_changed, self._interval, f"spec map {self.path}", iterations=iterations
        )
