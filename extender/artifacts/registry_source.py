"""The default artifact source: the spec attached to each image in its registry, cached.

Owns :class:`RegistrySource`: specs found through :class:`~extender.registry.client.RegistryClient`,
with the caches: tag to manifest (TTL), referrers listing (TTL; an empty listing is the
negative cache with its own TTL), artifact digest to compiled spec (immutable), a short error
cache, and a per-(image, platform, pull context) answer cache that the request path reads
without awaiting. Every level is bounded and single-flight per key. Pods' pull secrets come
through :mod:`extender.kube.secrets`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

from extender._util import BoundedDict, SingleFlight, V
from extender.artifacts.types import PullContext, SpecKey, SpecLookup
from extender.kube.secrets import PullSecretError, SecretReader
from extender.nfd.rules import CompiledSpec, load_spec
from extender.nfd.spec import SpecError
from extender.registry.auth import DockerConfig
from extender.registry.client import RegistryClient
from extender.registry.errors import (
    HostRefusedError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)
from extender.registry.reference import (
    Descriptor,
    ImageReference,
    Platform,
    choose_newest,
    index_children,
    is_index,
)

__all__ = [
    "LOAD_FAILURE_REASONS",
    "ArtifactCacheConfig",
    "ArtifactStats",
    "CacheCounters",
    "RegistrySource",
]

log = logging.getLogger(__name__)


Stat = tuple[int, int, int] | None

# Label values of failed loads: the registry error kinds (extender.registry.errors), a load
# over --load-timeout, and a bug. A fixed set, so the metric's cardinality is bounded.
LOAD_FAILURE_REASONS = (
    "unavailable",  # refused, reset, timed out, 5xx: retried after --error-ttl
    "auth",
    "not_found",
    "protocol",  # an answer that cannot be used: bad JSON, wrong digest, too large
    "refused",  # the host policy refused the registry host
    "reference",  # not a valid image reference
    "timeout",  # the whole load took over --load-timeout
    "internal",
    "error",
)


@dataclass(frozen=True, slots=True)
class ArtifactCacheConfig:
    """TTLs (seconds) and sizes of :class:`RegistrySource`'s caches. No defaults for what
    ``serve`` flags set: its option table declares them, and ``Settings.artifact_cache_config()``
    derives this from it."""

    tag_ttl: float  # tag → manifest digest (and an index's children)
    referrers_ttl: float  # a non-empty referrers listing
    negative_ttl: float  # an empty listing: "this image has no artifact (yet)"
    error_ttl: float  # a failure, so a down registry is not hammered
    stale_for: float  # during an outage, keep serving a good answer this long
    max_entries: int  # per cache (answers, manifests, listings, secrets)
    max_specs: int  # compiled specs by artifact digest
    load_timeout: float = 30.0  # one whole load (resolve, list, fetch, compile); not a flag

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
    # ... by what failed (LOAD_FAILURE_REASONS): the registry error's kind, or timeout/internal
    failures_by_reason: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(LOAD_FAILURE_REASONS, 0)
    )
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


class RegistrySource:
    """Specs attached to images in their registries, cached (see the module docstring).

    Implements :class:`extender.artifacts.types.ArtifactSource`. ``get_cached`` answers from the
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
        config: ArtifactCacheConfig,
        *,
        secrets: SecretReader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.config = config
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

    def _failed(self, reason: str) -> None:
        self.stats.failures += 1
        by_reason = self.stats.failures_by_reason
        by_reason[reason if reason in by_reason else "error"] += 1

    async def _load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        self.stats.loads += 1
        origin = f"registry:{key.reference}"
        previous = self._answers.get((key, context))
        try:
            async with asyncio.timeout(self.config.load_timeout):
                lookup, expires = await self._lookup(key, context, origin)
        except (InvalidReferenceError, HostRefusedError) as err:
            # The reference's fault, not the registry's: no retry or outage policy applies.
            self._failed(err.kind)
            log.warning("cannot use reference %s: %s", key.reference, err)
            if isinstance(err, HostRefusedError):
                message = "its registry host is refused by the extender's host policy"
            else:
                message = "not a valid image reference"
            lookup = SpecLookup.unusable_reference(message, origin)
            expires = self._clock() + self.config.error_ttl
            self._answers.put((key, context), _Answer(lookup, expires, None))
            return lookup
        except (RegistryError, TimeoutError) as err:
            if isinstance(err, RegistryError):
                message = str(err)
            else:
                message = f"{key.reference}: loading took over {self.config.load_timeout:g}s"
            now = self._clock()
            self._failed(err.kind if isinstance(err, RegistryError) else "timeout")
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
            self._failed("internal")
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
        """The spec lookup of docs/registries.md through the caches: (answer, when it expires)."""
        ref = ImageReference.parse(key.reference)
        credentials = await self._credentials(context)
        manifest = await self._manifest(ref, credentials, context)
        expires = manifest.expires
        subjects = [manifest.value.digest]
        platform = _parse_platform(key.platform)
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

    def use_pull_secrets(self, secrets: SecretReader | None) -> None:
        """Read pods' pull secrets through ``secrets`` from now on (None: stop reading them).

        ``serve`` builds its API client where it also closes it, after the source exists.
        """
        self._secrets = secrets

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
                try:
                    payload = await self._secrets.read(context.namespace, name)
                except PullSecretError as err:
                    raise RegistryAuthError(str(err)) from None
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


def _parse_platform(text: str) -> Platform | None:
    if not text:
        return None
    try:
        return Platform.parse(text)
    except ValueError:
        return None
