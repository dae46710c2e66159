"""Artifact sources: where an image's compatibility spec comes from.

Owns implementations of :class:`extender.policy.ArtifactSource`. For now:

* :class:`SpecMapSource` (``--spec-map FILE``): a YAML list of ``{image: PATTERN, spec: PATH}``
  for images without attached artifacts and for air-gapped clusters. PATTERN is a shell-style
  glob (``fnmatch``: ``*``, ``?``, ``[...]``; ``*`` also matches ``/`` and ``:``) over the full
  image reference as written in the pod (or over the explicit reference of the pod's
  ``artifacts`` annotation); PATH is relative to the map file; the first match wins; an
  image no pattern matches has no spec. Specs are compiled once per content digest and the
  map is re-read when it or a spec file changes.
* :class:`NoArtifacts`: every image has no spec (no source configured).
* :class:`RegistrySource` (the default of ``serve``): the spec attached to the image in its
  registry (DESIGN §2 "Spec lookup"), through :class:`extender.registry.RegistryClient`, with
  the caches of DESIGN §4: tag → manifest (TTL), referrers listing (TTL; an empty listing is
  the negative cache with its own TTL), artifact digest → compiled spec (immutable), a short
  error cache, and a per-(image, platform, pull context) answer cache that the request path
  reads without awaiting. Every level is bounded and single-flight per key.
* :class:`PodPrefetcher`: watches unbound pods of our schedulers and starts their loads as
  soon as they appear, so that filter (almost) never waits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import hashlib
import logging
import math
import os
import platform as platform_module
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import yaml

from extender.kubewatch import ListWatch, failure_reason
from extender.policy import BoundedDict, PullContext, SpecKey, SpecLookup
from extender.registry import (
    CompatibilityArtifact,
    Descriptor,
    DockerConfig,
    HostPolicy,
    ImageReference,
    Platform,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryHostConfig,
    RegistryLimits,
    RegistryNotFoundError,
    RegistryUnavailableError,
    choose_newest,
    index_children,
    is_index,
    load_registry_hosts,
)
from extender.rules import CompiledSpec, load_spec
from extender.spec import SpecError

if TYPE_CHECKING:
    from extender.config import Settings
__all__ = [
    "ArtifactCacheConfig",
    "ArtifactSourceError",
    "ArtifactStats",
    "CacheCounters",
    "KubernetesSecrets",
    "NoArtifacts",
    "PodPrefetcher",
    "RegistrySource",
    "SecretReader",
    "SingleFlight",
    "SpecMap",
    "SpecMapError",
    "SpecMapSource",
    "fetch_spec_like_nfd",
    "parse_nfd_platform",
    "registry_source_from",
]

log = logging.getLogger(__name__)

MAX_MAP_BYTES = 1 << 20


class SpecMapError(ValueError):
    """The spec map file itself cannot be used (not the specs it points to)."""


class NoArtifacts:
    """An artifact source that knows no specs: every image is neutral."""

    ready = True

    def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None:
        return SpecLookup.none()

    async def load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        return SpecLookup.none()


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


Stat = tuple[int, int, int] | None


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
        done = 0
        while iterations is None or done < iterations:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self.reload_if_changed)
            except Exception:
                log.exception("spec map %s: unexpected error while reloading", self.path)
            done += 1


# --------------------------------------------------------------------------------------------
# The registry-backed source

K = TypeVar("K")
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one running computation per key; concurrent callers share its result.

    The computation runs as its own task, so a caller that gives up (a filter whose wait
    budget ran out) does not cancel it: the result still lands in the caches for the next
    call. ``started`` counts computations actually started (tests and metrics read it).
    """

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}
        self.started = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: K) -> bool:
        return key in self._tasks

    def start(self, key: K, factory: Callable[[], Coroutine[Any, Any, V]]) -> asyncio.Task[V]:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(factory())
            self._tasks[key] = task
            self.started += 1

            def forget(done: asyncio.Task[V]) -> None:
                if self._tasks.get(key) is done:
                    del self._tasks[key]
                if not done.cancelled():
                    done.exception()  # retrieved: a failure is reported to the callers

            task.add_done_callback(forget)
        return task

    async def run(self, key: K, factory: Callable[[], Coroutine[Any, Any, V]]) -> V:
        return await asyncio.shield(self.start(key, factory))

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class ArtifactCacheConfig:
    """TTLs (seconds) and sizes of :class:`RegistrySource`'s caches (``serve`` flags)."""

    tag_ttl: float = 60.0  # tag → manifest digest (and an index's children)
    referrers_ttl: float = 60.0  # a non-empty referrers listing
    negative_ttl: float = 60.0  # an empty listing: "this image has no artifact (yet)"
    error_ttl: float = 5.0  # a failure, so a down registry is not hammered
    stale_for: float = 600.0  # during an outage, keep serving a good answer this long
    max_entries: int = 10_000  # per cache (answers, manifests, listings, secrets)
    max_specs: int = 1_000  # compiled specs by artifact digest
    load_timeout: float = 30.0  # one whole load (resolve, list, fetch, compile)

    def __post_init__(self) -> None:
        for name in ("tag_ttl", "referrers_ttl", "negative_ttl", "error_ttl", "stale_for"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        if self.max_entries < 1 or self.max_specs < 1:
            raise ValueError("cache sizes must be at least 1")
        if self.load_timeout <= 0:
            raise ValueError("the load timeout must be positive")


@dataclass(slots=True)
class CacheCounters:
    hits: int = 0
    misses: int = 0

    @property
    def ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(slots=True)
class ArtifactStats:
    """Counters of :class:`RegistrySource`; read at scrape time (plain integers)."""

    answers: CacheCounters = field(default_factory=CacheCounters)  # get_cached on the hot path
    manifests: CacheCounters = field(default_factory=CacheCounters)
    referrers: CacheCounters = field(default_factory=CacheCounters)
    specs: CacheCounters = field(default_factory=CacheCounters)
    secrets: CacheCounters = field(default_factory=CacheCounters)
    loads: int = 0  # loads that did work (single-flight leaders)
    failures: int = 0  # loads that ended in a failure
    stale_served: int = 0  # failures hidden by a previous good answer (registry outage)
    refreshes: int = 0  # background refreshes started by an expired answer

    def caches(self) -> dict[str, CacheCounters]:
        return {
            "answers": self.answers,
            "manifests": self.manifests,
            "referrers": self.referrers,
            "specs": self.specs,
            "secrets": self.secrets,
        }


@dataclass(frozen=True, slots=True)
class _Timed(Generic[V]):
    value: V
    expires: float


@dataclass(frozen=True, slots=True)
class _Manifest:
    digest: str
    children: tuple[Descriptor, ...]  # an index's platform manifests; () for a manifest


@dataclass(frozen=True, slots=True)
class _Answer:
    lookup: SpecLookup
    expires: float
    good_since: float | None  # when the last non-failure answer was obtained


class SecretReader(Protocol):
    """Pull secrets by namespace and name: the ``.dockerconfigjson`` payload, None if absent."""

    async def read(self, namespace: str, name: str) -> bytes | None: ...


class KubernetesSecrets:
    """Reads ``kubernetes.io/dockerconfigjson`` (and legacy ``dockercfg``) pull secrets."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self._forbidden_logged: set[str] = set()

    async def read(self, namespace: str, name: str) -> bytes | None:
        return await asyncio.to_thread(self._read, namespace, name)

    def _read(self, namespace: str, name: str) -> bytes | None:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            secret = client.CoreV1Api(self._api_client).read_namespaced_secret(
                name, namespace, _request_timeout=10
            )
        except ApiException as err:
            if err.status == 404:
                return None
            if err.status == 403:
                # Reading pull secrets is an opt-in permission (deploy/'s pull-secrets
                # component). Without it, go on anonymously: public registries still work and a
                # private one answers with an auth error that names the registry.
                if namespace not in self._forbidden_logged:
                    self._forbidden_logged.add(namespace)
                    log.warning(
                        "may not read pull secrets in namespace %s (HTTP 403: enable the "
                        "pull-secrets component or grant get on secrets); loading specs "
                        "without them",
                        namespace,
                    )
                return None
            raise RegistryAuthError(
                f"cannot read pull secret {namespace}/{name}: HTTP {err.status}"
            ) from None
        data = secret.data or {}
        encoded = data.get(".dockerconfigjson") or data.get(".dockercfg")
        return base64.b64decode(encoded) if encoded else None


class RegistrySource:
    """Specs attached to images in their registries, cached per DESIGN §4.

    Implements :class:`extender.policy.ArtifactSource`. ``get_cached`` answers from the
    answer cache without awaiting; an expired answer is still returned (stale while
    revalidate) and a background refresh is started, so the request path never waits for a
    TTL. ``load`` does the work: it honours every TTL, shares lower-level results (an index's
    listing serves every platform; a spec is compiled once per artifact digest) and is
    single-flight per (key, pull context) and per lower-level key.

    Failures become :meth:`SpecLookup.failed` answers, cached for ``error_ttl``. When the
    registry is unavailable (timeout, connection refused, 5xx) and the key had a good answer
    less than ``stale_for`` ago, that answer keeps being served: an artifact digest's spec is
    immutable and a listing only risks missing a newer artifact. An image never loaded
    before gets the failure (the policy answers ``Error`` or ignores it per
    ``--on-registry-error``).

    Cached results are shared between pods whatever their pull secrets; secrets only decide
    how a registry is reached. A pod that could not pull an image can therefore see its
    (non-secret) compatibility spec used for scheduling: it still cannot pull the image.
    """

    ready = True

    def __init__(
        self,
        client: RegistryClient,
        config: ArtifactCacheConfig | None = None,
        *,
        secrets: SecretReader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.config = config or ArtifactCacheConfig()
        self.stats = ArtifactStats()
        self._secrets = secrets
        self._clock = clock
        size = self.config.max_entries
        self._answers: BoundedDict[tuple[SpecKey, PullContext], _Answer] = BoundedDict(size)
        self._manifests: BoundedDict[tuple[str, str, str], _Timed[_Manifest]] = BoundedDict(size)
        self._listings: BoundedDict[tuple[str, str, str], _Timed[tuple[Descriptor, ...]]] = (
            BoundedDict(size)
        )
        self._specs: BoundedDict[str, CompiledSpec | SpecError] = BoundedDict(self.config.max_specs)
        self._secret_cache: BoundedDict[tuple[str, str], _Timed[DockerConfig | None]] = BoundedDict(
            size
        )
        self.flights: SingleFlight[tuple[SpecKey, PullContext], SpecLookup] = SingleFlight()
        self._manifest_flights: SingleFlight[tuple[Any, ...], _Timed[_Manifest]] = SingleFlight()
        self._listing_flights: SingleFlight[tuple[Any, ...], _Timed[tuple[Descriptor, ...]]] = (
            SingleFlight()
        )
        self._spec_flights: SingleFlight[str, CompiledSpec | SpecError] = SingleFlight()

    # -- ArtifactSource ----------------------------------------------------------------------

    def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None:
        answer = self._answers.get((key, context))
        if answer is None:
            self.stats.answers.misses += 1
            return None
        self.stats.answers.hits += 1
        if answer.expires <= self._clock() and not self.flights.running((key, context)):
            try:
                self.flights.start((key, context), lambda: self._load(key, context))
            except RuntimeError:  # no running loop (a synchronous caller): no refresh
                pass
            else:
                self.stats.refreshes += 1
        return answer.lookup

    async def load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        """The spec for ``key``, fetched as needed; never raises for registry failures."""
        answer = self._answers.get((key, context))
        if answer is not None and answer.expires > self._clock():
            return answer.lookup
        return await self.flights.run((key, context), lambda: self._load(key, context))

    async def aclose(self) -> None:
        """Cancel every load still running (at shutdown)."""
        for flights in (
            self.flights,
            self._manifest_flights,
            self._listing_flights,
            self._spec_flights,
        ):
            await flights.cancel_all()

    # -- one load ------------------------------------------------------------------------------

    async def _load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        self.stats.loads += 1
        origin = f"registry:{key.reference}"
        previous = self._answers.get((key, context))
        try:
            async with asyncio.timeout(self.config.load_timeout):
                lookup, expires = await self._lookup(key, context, origin)
        except (RegistryError, TimeoutError) as err:
            if isinstance(err, RegistryError):
                message = str(err)
            else:
                message = f"{key.reference}: loading took over {self.config.load_timeout:g}s"
            now = self._clock()
            self.stats.failures += 1
            if (
                isinstance(err, RegistryUnavailableError | TimeoutError)
                and previous is not None
                and previous.good_since is not None
                and now - previous.good_since <= self.config.stale_for
            ):
                self.stats.stale_served += 1
                log.warning(
                    "%s: registry unavailable (%s); serving the answer cached %.0fs ago",
                    key.reference,
                    message,
                    now - previous.good_since,
                )
                self._answers.put(
                    (key, context),
                    _Answer(previous.lookup, now + self.config.error_ttl, previous.good_since),
                )
                return previous.lookup
            log.info("no spec for %s: %s", key.reference, message)
            lookup = SpecLookup.failed(message, origin)
            self._answers.put((key, context), _Answer(lookup, now + self.config.error_ttl, None))
            return lookup
        except Exception as err:  # a bug or an unexpected library error: still an answer
            log.exception("loading the spec of %s failed unexpectedly", key.reference)
            self.stats.failures += 1
            lookup = SpecLookup.failed(f"internal error: {type(err).__name__}: {err}", origin)
            expires = self._clock() + self.config.error_ttl
            self._answers.put((key, context), _Answer(lookup, expires, None))
            return lookup
        now = self._clock()
        self._answers.put((key, context), _Answer(lookup, expires, now))
        return lookup

    async def _lookup(
        self, key: SpecKey, context: PullContext, origin: str
    ) -> tuple[SpecLookup, float]:
        """DESIGN §2 "Spec lookup" through the caches: (answer, when it expires)."""
        ref = ImageReference.parse(key.reference)
        credentials = await self._credentials(context)
        manifest = await self._manifest(ref, credentials, context)
        expires = manifest.expires
        subjects = [manifest.value.digest]
        platform = _platform(key.platform)
        if platform is not None:
            child = next((c for c in manifest.value.children if platform.matches(c.platform)), None)
            if child is not None:
                subjects.insert(0, child.digest)  # the platform's own spec replaces the index's
        for subject in subjects:
            listing = await self._listing(ref, subject, credentials, context)
            expires = min(expires, listing.expires)
            if listing.value:
                newest = choose_newest(listing.value)
                compiled = await self._spec(ref, newest, credentials)
                where = f"{origin}@{subject} (artifact {newest.digest})"
                if isinstance(compiled, SpecError):
                    return SpecLookup.invalid_spec(compiled, where), expires
                return SpecLookup.found(compiled, where), expires
        return SpecLookup.none(), expires

    async def _manifest(
        self, ref: ImageReference, credentials: Sequence[DockerConfig], context: PullContext
    ) -> _Timed[_Manifest]:
        cache_key = (ref.registry, ref.repository, ref.reference)
        cached = self._manifests.get(cache_key)
        if cached is not None and cached.expires > self._clock():
            self.stats.manifests.hits += 1
            return cached
        self.stats.manifests.misses += 1

        async def fetch() -> _Timed[_Manifest]:
            descriptor, document = await self.client.get_manifest(ref, credentials=credentials)
            children = tuple(index_children(document)) if is_index(descriptor, document) else ()
            # A manifest named by digest never changes; a tag may move.
            ttl = math.inf if ref.digest else self.config.tag_ttl
            found = _Timed(_Manifest(descriptor.digest, children), self._clock() + ttl)
            self._manifests.put(cache_key, found)
            return found

        return await self._manifest_flights.run((cache_key, context), fetch)

    async def _listing(
        self,
        ref: ImageReference,
        subject: str,
        credentials: Sequence[DockerConfig],
        context: PullContext,
    ) -> _Timed[tuple[Descriptor, ...]]:
        cache_key = (ref.registry, ref.repository, subject)
        cached = self._listings.get(cache_key)
        if cached is not None and cached.expires > self._clock():
            self.stats.referrers.hits += 1
            return cached
        self.stats.referrers.misses += 1

        async def fetch() -> _Timed[tuple[Descriptor, ...]]:
            found = tuple(await self.client.referrers(ref, subject, credentials=credentials))
            ttl = self.config.referrers_ttl if found else self.config.negative_ttl
            timed = _Timed(found, self._clock() + ttl)
            self._listings.put(cache_key, timed)
            return timed

        return await self._listing_flights.run((cache_key, context), fetch)

    async def _spec(
        self, ref: ImageReference, artifact: Descriptor, credentials: Sequence[DockerConfig]
    ) -> CompiledSpec | SpecError:
        cached = self._specs.get(artifact.digest)
        if cached is not None:
            self.stats.specs.hits += 1
            return cached
        self.stats.specs.misses += 1

        async def fetch() -> CompiledSpec | SpecError:
            data = await self.client.fetch_artifact(ref, artifact, credentials=credentials)
            try:
                # Off the event loop: a large spec takes a while to parse and compile.
                compiled: CompiledSpec | SpecError = await asyncio.to_thread(load_spec, data)
            except SpecError as err:
                log.error("%s: artifact %s: invalid spec: %s", ref, artifact.digest, err)
                compiled = err
            self._specs.put(artifact.digest, compiled)
            return compiled

        # Keyed by digest alone: the content is the same whoever fetches it.
        return await self._spec_flights.run(artifact.digest, fetch)

    async def _credentials(self, context: PullContext) -> list[DockerConfig]:
        if self._secrets is None or not context.pull_secrets:
            return []
        configs = []
        for name in context.pull_secrets:
            cache_key = (context.namespace, name)
            cached = self._secret_cache.get(cache_key)
            if cached is not None and cached.expires > self._clock():
                self.stats.secrets.hits += 1
                config = cached.value
            else:
                self.stats.secrets.misses += 1
                payload = await self._secrets.read(context.namespace, name)
                config = None
                if payload is not None:
                    try:
                        config = DockerConfig.from_secret_data(payload)
                    except (ValueError, AttributeError, TypeError):
                        log.warning("pull secret %s/%s is not a docker config", *cache_key)
                self._secret_cache.put(
                    cache_key, _Timed(config, self._clock() + self.config.tag_ttl)
                )
            if config is not None:
                configs.append(config)
        return configs


def _platform(text: str) -> Platform | None:
    if not text:
        return None
    try:
        return Platform.parse(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Prefetch: unbound pods of our schedulers, as soon as they appear

PodCallback = Callable[[Mapping[str, Any]], None]


class PodPrefetcher(ListWatch):
    """Watches unbound pods with one of our ``schedulerName`` s and hands each to ``on_pod``.

    ``on_pod`` runs on the event loop (``serve`` passes one that starts the pod's spec loads
    for every node platform through :meth:`extender.policy.Policy.prefetch`), so by the time
    kube-scheduler calls filter the specs are usually cached. One list+watch stream
    (:class:`~extender.kubewatch.ListWatch`) per scheduler name, with the field selector
    ``spec.schedulerName=NAME,spec.nodeName=``.

    Prefetch is an optimisation: while the API server is unreachable nothing breaks, filter
    just loads on demand within its wait budget.
    """

    def __init__(
        self,
        api_client: Any,
        scheduler_names: Sequence[str],
        on_pod: PodCallback,
        *,
        page_size: int = 200,
        watch_timeout_s: int = 240,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        super().__init__(
            tuple(dict.fromkeys(scheduler_names)),
            page_size=page_size,
            watch_timeout_s=watch_timeout_s,
            backoff_s=backoff_s,
            list_timeout_s=30,
        )
        self._api_client = api_client
        self._on_pod = on_pod
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pods_seen = 0  # pod events handed to on_pod (tests and metrics read it)

    @property
    def relists(self) -> int:
        return sum(self.stream_relists.values())

    async def run(self, *, iterations: int | None = None) -> None:
        """Watch until cancelled or :meth:`stop` (or ``iterations`` outer turns, for tests)."""
        self._loop = asyncio.get_running_loop()
        await super().run(iterations=iterations)

    # -- ListWatch hooks -------------------------------------------------------------------

    def call(self, stream: str, **kwargs: Any) -> Any:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster

        return client.CoreV1Api(self._api_client).list_pod_for_all_namespaces(
            field_selector=f"spec.schedulerName={stream},spec.nodeName=", **kwargs
        )

    def on_list_item(self, stream: str, item: Mapping[str, Any]) -> None:
        self._hand_over(item)

    def on_event(self, stream: str, kind: str, obj: Mapping[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._hand_over(obj)

    def on_failure(self, stream: str, err: Exception) -> None:
        log.warning("pod watch (prefetch) failed (%s); retrying", failure_reason(err))

    def _hand_over(self, obj: Mapping[str, Any]) -> None:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return
        loop = self._loop
        if loop is None:
            return
        self.pods_seen += 1
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._deliver, obj)

    def _deliver(self, obj: Mapping[str, Any]) -> None:
        try:
            self._on_pod(obj)
        except Exception:
            log.exception("prefetch of a pod failed")


# --------------------------------------------------------------------------------------------
# Wiring for ``serve``


class ArtifactSourceError(ValueError):
    """The registry source cannot be set up (unreadable registry or docker config file)."""


def registry_source_from(settings: Settings, api_client: Any = None) -> RegistrySource:
    """The :class:`RegistrySource` ``serve`` runs with (enter ``source.client`` to use it).

    ``api_client`` (an official-client ApiClient) enables pods' ``imagePullSecrets``.
    """
    hosts: dict[str, RegistryHostConfig] = {}
    if settings.registry_config is not None:
        try:
            hosts = load_registry_hosts(settings.registry_config)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
            raise ArtifactSourceError(
                f"--registry-config {settings.registry_config}: {err}"
            ) from None
    docker_config = None
    if settings.docker_config is not None:
        try:
            docker_config = DockerConfig.from_file(settings.docker_config)
        except (OSError, ValueError, AttributeError) as err:
            raise ArtifactSourceError(f"--docker-config {settings.docker_config}: {err}") from None
    client = RegistryClient(
        policy=HostPolicy(
            allow=settings.registry_allow,
            deny=settings.registry_deny,
            allow_loopback=settings.registry_allow_loopback,
        ),
        hosts=hosts,
        docker_config=docker_config,
        limits=RegistryLimits(timeout_s=settings.registry_timeout),
    )
    secrets = KubernetesSecrets(api_client) if api_client is not None else None
    return RegistrySource(client, settings.artifact_cache_config(), secrets=secrets)


# --------------------------------------------------------------------------------------------
# ``validate --image``: one artifact, fetched the way ``nfd compat validate-node`` does

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


def parse_nfd_platform(text: str) -> Platform | None:
    """``--platform`` as NFD parses it: ``os[/arch[/variant]]``; a lone OS takes this host's
    architecture (NFD: ``runtime.GOARCH``); empty means none. ``:os_version`` is refused."""
    text = text.strip()
    if not text:
        return None
    if ":" in text:
        raise ValueError(f"platform {text!r}: an os.version (after ':') is not supported")
    parts = text.split("/")
    if len(parts) > 3:
        raise ValueError(f"failed to parse platform {text!r}: expected format os[/arch[/variant]]")
    if not parts[0]:
        raise ValueError("invalid platform: OS cannot be empty")
    if len(parts) == 1:
        machine = platform_module.machine().lower()
        parts.append(_GOARCH.get(machine, machine))
    if not parts[1]:
        raise ValueError("invalid platform: Architecture cannot be empty")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


async def fetch_spec_like_nfd(
    client: RegistryClient,
    reference: str,
    platform: Platform | None = None,
    credentials: Sequence[DockerConfig] = (),
) -> CompatibilityArtifact:
    """The spec ``nfd compat validate-node --image REF [--platform P]`` would evaluate.

    As NFD's client: resolve (with a platform, the first matching manifest of an index,
    whose own referrers alone count, with no fallback to the index's), list referrers of the
    artifact type (API, else the tag schema), take the newest, read its spec layer. Raises
    :class:`~extender.registry.RegistryError`; no artifact is NFD's ``compatibility artifact
    not found``. One difference: we read the layer whose media type is the spec's, and
    layers[0] only when none has it (NFD always reads layers[0]).
    """
    ref = ImageReference.parse(reference)
    found = await client.fetch_compatibility_spec(ref, platform=platform, credentials=credentials)
    if found is None:
        raise RegistryNotFoundError(f"{reference}: compatibility artifact not found")
    return found
