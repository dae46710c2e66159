"""Server settings: one table of options, read from flags and ``IMAGE_COMPAT_*`` variables.

Owns :class:`Settings` (what ``serve`` runs with) and :data:`OPTIONS`, the single table from
which the ``serve`` flags, the environment variable names and the configuration docs
(:func:`markdown_table`) are all generated. A flag wins over its environment variable, which
wins over the default. Values are checked here, so a bad setting stops ``serve`` with a
message naming the flag or variable, before anything starts.

This module is longer than the others on purpose: most of it is the declarative option table,
one entry per flag, which reads best in one place.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extender.kube.nodefeatures import ALL_NAMESPACES
from extender.nfd.rules import SetSemantics
from extender.nodes.model import DEFAULT_NFD_NAMESPACE
from extender.policy.pods import (
    DEFAULT_ANNOTATION_PREFIX,
    DEFAULT_SCHEDULER_NAME,
    FilterReasons,
    Mode,
    PolicyConfig,
    RegistryErrorPolicy,
)

if TYPE_CHECKING:
    from extender.artifacts.registry_source import ArtifactCacheConfig

__all__ = [
    "ENV_PREFIX",
    "OPTIONS",
    "ConfigError",
    "Option",
    "Settings",
    "add_arguments",
    "configuration_page",
    "markdown_table",
    "parse_duration",
    "parse_listen",
    "parse_size",
    "settings_from",
]

ENV_PREFIX = "IMAGE_COMPAT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("console", "json")


class FeatureSourceKind(StrEnum):
    """Where node features come from (``--feature-source``)."""

    AUTO = "auto"  # the file when one is given, else the API server
    KUBERNETES = "kubernetes"
    FILE = "file"
    NONE = "none"


class ArtifactSourceKind(StrEnum):
    """Where images' specs come from (``--artifact-source``)."""

    AUTO = "auto"  # the spec map when one is given, else the registries
    REGISTRY = "registry"
    SPEC_MAP = "spec-map"
    NONE = "none"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the flag or variable."""


# --------------------------------------------------------------------------------------------
# Value parsers (each raises ValueError with a short reason)

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"([0-9]+)(Ki|Mi|Gi|K|M|G)?")
_SIZE_UNITS = {None: 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1 << 10, "Mi": 1 << 20}
_SIZE_UNITS["Gi"] = 1 << 30


def parse_duration(text: str) -> float:
    """Seconds from ``300ms``, ``2s``, ``1m30s`` (Go style) or a bare number of seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pos, value = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            value += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{text!r} is not a duration (e.g. 300ms, 2s, 1m)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 300ms, 2s, 1m)")
    return value


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64Ki``, ``64Mi``, ``1Gi`` (or decimal K, M, G)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (e.g. 64Mi, 1048576)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``; IPv6 hosts in brackets (``[::1]:8888``). Port 0 picks a free port."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8888)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


def _parse_prefix(text: str) -> str:
    text = text.strip()
    if any(c in text for c in "?#{} ") or "//" in text:
        raise ValueError(f"{text!r} is not a URL path")
    return "/" + text.strip("/") + "/" if text.strip("/") else "/"


def _parse_names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError("at least one name is needed")
    return names


def _parse_modes(text: str) -> frozenset[Mode]:
    return frozenset(_parse_choice(Mode)(n) for n in _parse_names(text))


def _parse_choice(enum: Any) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return enum(text.strip().lower())
        except ValueError:
            choices = ", ".join(m.value for m in enum)
            raise ValueError(f"{text!r} is not one of {choices}") from None

    return parse


def _parse_positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"{value} must be at least 1")
    return value


def _parse_path(text: str) -> Path | None:
    return Path(text.strip()) if text.strip() else None


def _parse_text(text: str) -> str:
    return text.strip()


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _parse_namespaces(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        if name != ALL_NAMESPACES and not _DNS_LABEL.fullmatch(name):
            raise ValueError(f"{name!r} is not a namespace name (or * for all)")
    return names


def _parse_patterns(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))


def _parse_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _parse_log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_FORMATS)}")
    return value


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


# --------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its :class:`Settings` field, flag, default (as written) and meaning."""

    field: str
    flag: str
    default: str
    help: str
    parse: Callable[[str], Any]
    metavar: str = ""
    repeatable: bool = False  # the flag may repeat; each value (and the variable) is a comma list
    boolean: bool = False  # --flag / --no-flag

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.removeprefix("--").upper().replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option(
        "listen",
        "--listen",
        "127.0.0.1:8888",
        "Address to serve on (HOST:PORT). Loopback by default: say so explicitly to listen "
        "elsewhere.",
        parse_listen,
        "HOST:PORT",
    ),
    Option(
        "path_prefix",
        "--path-prefix",
        "/",
        "URL path under which the verbs are served (POST PREFIXfilter, PREFIXprioritize); "
        "the scheduler's urlPrefix must end with it. /healthz and /readyz stay at the root.",
        _parse_prefix,
        "PATH",
    ),
    Option(
        "scheduler_names",
        "--scheduler-name",
        DEFAULT_SCHEDULER_NAME,
        "schedulerName of the pods to judge; other pods pass untouched. Repeatable or a "
        "comma list.",
        _parse_names,
        "NAME",
        repeatable=True,
    ),
    Option(
        "annotation_prefix",
        "--annotation-prefix",
        DEFAULT_ANNOTATION_PREFIX,
        "Prefix of the pod annotations tags, mode, artifacts and variants.",
        _parse_text,
        "PREFIX",
    ),
    Option(
        "allowed_modes",
        "--allowed-modes",
        "enforce,prefer,off",
        "Modes a pod may ask for with the mode annotation; a pod asking for another one is "
        "rejected on every node with a reason saying so.",
        _parse_modes,
        "MODES",
    ),
    Option(
        "default_mode",
        "--default-mode",
        "enforce",
        "Mode of pods without a mode annotation; must be an allowed mode.",
        _parse_choice(Mode),
        "MODE",
    ),
    Option(
        "set_semantics",
        "--set-semantics",
        "any",
        "any: an image's compatibility sets are alternatives (one must match); all: every "
        "set must match.",
        _parse_choice(SetSemantics),
        "any|all",
    ),
    Option(
        "on_registry_error",
        "--on-registry-error",
        "fail",
        "fail: when a spec cannot be fetched, filter answers Error and the scheduler retries; "
        "ignore: treat the image as having no spec.",
        _parse_choice(RegistryErrorPolicy),
        "fail|ignore",
    ),
    Option(
        "filter_reasons",
        "--filter-reasons",
        "when-all-rejected",
        "Which rejected nodes filter's answer lists in FailedAndUnresolvableNodes, each with its "
        "reason. when-all-rejected: only when no node passes (the reasons then make the pod's "
        "FailedScheduling event; when a node passes, kube-scheduler places the pod among those "
        "and reads no reason, and a node missing from the answer counts as unschedulable and "
        "unresolvable, so answers stay small). always: every time, for a scheduler with "
        "another extender after this one. Rejections are counted in the metrics either way.",
        _parse_choice(FilterReasons),
        "when-all-rejected|always",
    ),
    Option(
        "spec_wait_budget",
        "--spec-wait-budget",
        "300ms",
        "How long filter waits for a spec that is not loaded yet before answering Error; "
        "keep it well under the scheduler's httpTimeout.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "max_body_bytes",
        "--max-body-bytes",
        "64Mi",
        "Largest request body accepted (413 beyond); full-Nodes mode needs room.",
        parse_size,
        "SIZE",
    ),
    Option(
        "max_inflight_body_bytes",
        "--max-inflight-body-bytes",
        "256Mi",
        "Request body bytes held at once over all connections (503 beyond, and the "
        "scheduler retries); with four --max-body-bytes bodies at once the extender stays "
        "within a 1Gi memory limit. Compressed bodies count inflated.",
        parse_size,
        "SIZE",
    ),
    Option(
        "request_read_timeout",
        "--request-read-timeout",
        "10s",
        "Longest time to receive a request's body once its headers are in (408 beyond, and "
        "the connection is closed).",
        parse_duration,
        "DURATION",
    ),
    Option(
        "keepalive_timeout",
        "--keepalive-timeout",
        "30s",
        "How long a connection may wait for its next request's headers to be complete, from "
        "its start or its previous answer: idle keep-alive connections and slowly sent "
        "headers are closed after it (kube-scheduler reconnects).",
        parse_duration,
        "DURATION",
    ),
    Option(
        "memo_size",
        "--memo-size",
        "65536",
        "Entries in each level of the verdict memo (node generation → fingerprint; "
        "spec, tags, fingerprint → verdict).",
        _parse_positive_int,
        "N",
    ),
    Option(
        "node_tables",
        "--node-tables",
        "128",
        "Pod shapes (the specs and tags a verb applies) whose per-node answers are kept, per "
        "verb: a warm filter or prioritize is then one lookup per node. Each holds one entry "
        "per node asked about (~21 bytes: ~104 KB at 5,000 nodes), so at most ~27 MB for "
        "both verbs at 5,000 nodes with the default; a shape past it is computed again "
        "from the verdict memo (a few ms).",
        _parse_positive_int,
        "N",
    ),
    Option(
        "feature_source",
        "--feature-source",
        "auto",
        "Where node features come from. kubernetes: watch NFD's NodeFeature objects and "
        "Nodes through the API server; file: --features-file; none: no node has features "
        "(every image with a spec is rejected); auto: file when --features-file is given, "
        "else kubernetes.",
        _parse_choice(FeatureSourceKind),
        "SOURCE",
    ),
    Option(
        "kubeconfig",
        "--kubeconfig",
        "",
        "kubeconfig for the API server. Empty: in-cluster configuration when running in a "
        "pod, else $KUBECONFIG or ~/.kube/config.",
        _parse_path,
        "FILE",
    ),
    Option(
        "kube_context",
        "--kube-context",
        "",
        "kubeconfig context to use (empty: its current context).",
        _parse_text,
        "NAME",
    ),
    Option(
        "nodefeature_namespaces",
        "--nodefeature-namespace",
        "",
        "Namespaces whose NodeFeature objects are read (empty: --nfd-namespace only; * for "
        "all, which needs cluster-wide list/watch RBAC). Repeatable or a comma list. Anyone "
        "who can write NodeFeatures in these namespaces can steer scheduling.",
        _parse_namespaces,
        "NAMESPACE",
        repeatable=True,
    ),
    Option(
        "features_file",
        "--features-file",
        "",
        "File of NodeFeature objects (YAML/JSON, several documents or a List), reloaded "
        "when it changes.",
        _parse_path,
        "FILE",
    ),
    Option(
        "nfd_namespace",
        "--nfd-namespace",
        DEFAULT_NFD_NAMESPACE,
        "NFD's namespace: its NodeFeature objects are merged first.",
        _parse_text,
        "NAMESPACE",
    ),
    Option(
        "spec_map",
        "--spec-map",
        "",
        "YAML list of {image: PATTERN, spec: PATH}: specs for images by glob, first match "
        "wins; PATH relative to the map. Reloaded when it changes.",
        _parse_path,
        "FILE",
    ),
    Option(
        "artifact_source",
        "--artifact-source",
        "auto",
        "Where specs come from. registry: the artifact attached to each image in its "
        "registry (OCI referrers API, else the sha256-<hex> tag); spec-map: --spec-map only; "
        "none: no image has a spec; auto: spec-map when --spec-map is given, else registry.",
        _parse_choice(ArtifactSourceKind),
        "SOURCE",
    ),
    Option(
        "registry_config",
        "--registry-config",
        "",
        "YAML {registries: {HOST: {plainHTTP, caFile, insecureSkipVerify, mirrors}}}: "
        "per-registry settings; nothing is guessed from a host name.",
        _parse_path,
        "FILE",
    ),
    Option(
        "docker_config",
        "--docker-config",
        "",
        "Docker config.json with the extender's own registry credentials (auths, "
        "credHelpers, credsStore). Pods' imagePullSecrets are used first.",
        _parse_path,
        "FILE",
    ),
    Option(
        "registry_allow",
        "--registry-allow",
        "",
        "Registry hosts (globs) or CIDRs the extender may connect to; when set, only these. "
        "Repeatable or a comma list.",
        _parse_patterns,
        "PATTERN",
        repeatable=True,
    ),
    Option(
        "registry_deny",
        "--registry-deny",
        "",
        "Registry hosts (globs) or CIDRs refused, in addition to link-local and cloud "
        "metadata addresses, which are always refused. Repeatable or a comma list.",
        _parse_patterns,
        "PATTERN",
        repeatable=True,
    ),
    Option(
        "registry_allow_loopback",
        "--registry-allow-loopback",
        "false",
        "Allow registries on loopback addresses (local development only: pod authors choose "
        "image hosts).",
        _parse_bool,
        boolean=True,
    ),
    Option(
        "registry_timeout",
        "--registry-timeout",
        "10s",
        "Timeout of one registry request.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "tag_ttl",
        "--tag-ttl",
        "1m",
        "How long a tag → digest resolution is cached (digest references never expire).",
        parse_duration,
        "DURATION",
    ),
    Option(
        "referrers_ttl",
        "--referrers-ttl",
        "1m",
        "How long an image's referrers listing is cached; an artifact attached later is "
        "seen after at most this long.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "negative_ttl",
        "--negative-ttl",
        "1m",
        'How long "this image has no artifact" is cached.',
        parse_duration,
        "DURATION",
    ),
    Option(
        "error_ttl",
        "--error-ttl",
        "5s",
        "How long a registry failure is cached, so a down registry is not hammered.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "stale_for",
        "--stale-for",
        "10m",
        "While a registry is unavailable, keep using a spec loaded successfully at most "
        "this long ago (0: never).",
        parse_duration,
        "DURATION",
    ),
    Option(
        "artifact_cache_size",
        "--artifact-cache-size",
        "10000",
        "Entries in each artifact cache (answers, manifests, referrers listings, secrets).",
        _parse_positive_int,
        "N",
    ),
    Option(
        "spec_cache_size",
        "--spec-cache-size",
        "1000",
        "Compiled specs kept, by artifact digest.",
        _parse_positive_int,
        "N",
    ),
    Option(
        "prefetch",
        "--prefetch",
        "true",
        "Watch unbound pods of our schedulers and load their specs before the scheduler "
        "asks (needs list/watch on pods; with the kubernetes feature source or a "
        "--kubeconfig).",
        _parse_bool,
        boolean=True,
    ),
    Option(
        "drift",
        "--drift",
        "true",
        "Watch running pods bound by our schedulers and report those whose node no longer "
        "satisfies their images' specs: a metric and a Warning event on the pod "
        "(docs/drift.md; needs create on events; with a Kubernetes configuration). The "
        "extender never evicts.",
        _parse_bool,
        boolean=True,
    ),
    Option(
        "drift_all_pods",
        "--drift-all-pods",
        "false",
        "With --drift, judge every bound pod whose images have a spec, whatever its "
        "schedulerName, as if our scheduler had placed it.",
        _parse_bool,
        boolean=True,
    ),
    Option(
        "drift_label",
        "--drift-label",
        "false",
        "With --drift, also label drifted pods nfd.k8s-sigs.io/compatibility-drift=true and "
        "nfd.k8s-sigs.io/drift-node=NODE (annotation nfd.k8s-sigs.io/drift-time), as NFD's "
        "scheduling proposal names them, and remove them once the node suits the pod again. "
        "Needs patch on pods.",
        _parse_bool,
        boolean=True,
    ),
    Option(
        "drift_interval",
        "--drift-interval",
        "5s",
        "How often drift is looked at again: every pod after a change of node features, "
        "else only pods that changed.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "scheduler_http_timeout",
        "--scheduler-http-timeout",
        "2s",
        "The httpTimeout of the extender in the scheduler's configuration; "
        "--spec-wait-budget must be at most half of it.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "file_check_interval",
        "--file-check-interval",
        "2s",
        "How often --features-file and --spec-map are checked for changes.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "shutdown_timeout",
        "--shutdown-timeout",
        "10s",
        "On SIGTERM, how long running requests may finish before they are cancelled.",
        parse_duration,
        "DURATION",
    ),
    Option(
        "log_level",
        "--log-level",
        "info",
        "debug, info, warning or error.",
        _parse_level,
        "LEVEL",
    ),
    Option(
        "access_log",
        "--access-log",
        "false",
        "Log one line per filter and prioritize call (verb, pod, node count, rejected count, "
        "duration, status): two lines per scheduled pod. Without it these lines are at debug "
        "level.",
        _parse_bool,
        boolean=True,
    ),
    Option(
        "log_format",
        "--log-format",
        "console",
        "console: one readable line per event, for people; json: one JSON object per line "
        "(time, level, logger, message and the event's fields), for log collectors.",
        _parse_log_format,
        "console|json",
    ),
    Option(
        "tls_cert",
        "--tls-cert",
        "",
        "PEM certificate (chain) to serve HTTPS with; needs --tls-key. Empty: plain HTTP. "
        "Reloaded when the file's content changes (a renewed Secret), without a restart.",
        _parse_path,
        "FILE",
    ),
    Option(
        "tls_key",
        "--tls-key",
        "",
        "PEM private key of --tls-cert.",
        _parse_path,
        "FILE",
    ),
    Option(
        "client_ca",
        "--client-ca",
        "",
        "PEM CA bundle: clients must present a certificate it signed (mTLS; point the "
        "scheduler's tlsConfig certFile/keyFile at one). Needs --tls-cert. Reloaded like it.",
        _parse_path,
        "FILE",
    ),
    Option(
        "tls_reload_interval",
        "--tls-reload-interval",
        "10s",
        "How often the --tls-cert, --tls-key and --client-ca files are read and hashed to "
        "detect a change (mounted Secrets are replaced without inotify events).",
        parse_duration,
        "DURATION",
    ),
)


_OPTION_BY_FIELD = {option.field: option for option in OPTIONS}


def _default(field_name: str) -> Any:
    """A :class:`Settings` field's default: its option's default, parsed as a flag would be."""
    option = _OPTION_BY_FIELD[field_name]
    return option.parse(option.default)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``serve`` needs. Each default is the option table's (:data:`OPTIONS`), which
    is where defaults are declared: the flags, the docs and these fields all read it."""

    listen: tuple[str, int] = _default("listen")
    path_prefix: str = _default("path_prefix")
    scheduler_names: tuple[str, ...] = _default("scheduler_names")
    annotation_prefix: str = _default("annotation_prefix")
    allowed_modes: frozenset[Mode] = _default("allowed_modes")
    default_mode: Mode = _default("default_mode")
    set_semantics: SetSemantics = _default("set_semantics")
    on_registry_error: RegistryErrorPolicy = _default("on_registry_error")
    filter_reasons: FilterReasons = _default("filter_reasons")
    spec_wait_budget: float = _default("spec_wait_budget")
    max_body_bytes: int = _default("max_body_bytes")
    max_inflight_body_bytes: int = _default("max_inflight_body_bytes")
    request_read_timeout: float = _default("request_read_timeout")
    keepalive_timeout: float = _default("keepalive_timeout")
    memo_size: int = _default("memo_size")
    node_tables: int = _default("node_tables")
    feature_source: FeatureSourceKind = _default("feature_source")
    features_file: Path | None = _default("features_file")
    kubeconfig: Path | None = _default("kubeconfig")
    kube_context: str = _default("kube_context")
    nodefeature_namespaces: tuple[str, ...] = _default("nodefeature_namespaces")
    nfd_namespace: str = _default("nfd_namespace")
    spec_map: Path | None = _default("spec_map")
    artifact_source: ArtifactSourceKind = _default("artifact_source")
    registry_config: Path | None = _default("registry_config")
    docker_config: Path | None = _default("docker_config")
    registry_allow: tuple[str, ...] = _default("registry_allow")
    registry_deny: tuple[str, ...] = _default("registry_deny")
    registry_allow_loopback: bool = _default("registry_allow_loopback")
    registry_timeout: float = _default("registry_timeout")
    tag_ttl: float = _default("tag_ttl")
    referrers_ttl: float = _default("referrers_ttl")
    negative_ttl: float = _default("negative_ttl")
    error_ttl: float = _default("error_ttl")
    stale_for: float = _default("stale_for")
    artifact_cache_size: int = _default("artifact_cache_size")
    spec_cache_size: int = _default("spec_cache_size")
    prefetch: bool = _default("prefetch")
    drift: bool = _default("drift")
    drift_all_pods: bool = _default("drift_all_pods")
    drift_label: bool = _default("drift_label")
    drift_interval: float = _default("drift_interval")
    scheduler_http_timeout: float = _default("scheduler_http_timeout")
    file_check_interval: float = _default("file_check_interval")
    shutdown_timeout: float = _default("shutdown_timeout")
    log_level: str = _default("log_level")
    access_log: bool = _default("access_log")
    log_format: str = _default("log_format")
    tls_cert: Path | None = _default("tls_cert")
    tls_key: Path | None = _default("tls_key")
    client_ca: Path | None = _default("client_ca")
    tls_reload_interval: float = _default("tls_reload_interval")

    def policy_config(self) -> PolicyConfig:
        return PolicyConfig(
            scheduler_names=frozenset(self.scheduler_names),
            annotation_prefix=self.annotation_prefix,
            allowed_modes=self.allowed_modes,
            default_mode=self.default_mode,
            set_semantics=self.set_semantics,
            on_registry_error=self.on_registry_error,
            spec_wait_budget=self.spec_wait_budget,
            memo_size=self.memo_size,
            node_tables=self.node_tables,
            filter_reasons=self.filter_reasons,
        )

    def check(self) -> Settings:
        """Cross-field checks; returns self. Raises :class:`ConfigError`."""
        try:
            self.policy_config()
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.max_body_bytes < 1024:
            raise ConfigError("--max-body-bytes: at least 1Ki is needed")
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ConfigError(
                "--max-inflight-body-bytes must be at least --max-body-bytes, or no body of "
                "the largest accepted size could ever be read"
            )
        if self.request_read_timeout <= 0 or self.keepalive_timeout <= 0:
            raise ConfigError("--request-read-timeout and --keepalive-timeout must be positive")
        if self.feature_source is FeatureSourceKind.FILE and self.features_file is None:
            raise ConfigError("--feature-source=file needs --features-file")
        if self.artifact_source is ArtifactSourceKind.SPEC_MAP and self.spec_map is None:
            raise ConfigError("--artifact-source=spec-map needs --spec-map")
        if self.spec_wait_budget * 2 > self.scheduler_http_timeout:
            raise ConfigError(
                f"--spec-wait-budget ({self.spec_wait_budget:g}s) must be at most half the "
                f"scheduler's httpTimeout (--scheduler-http-timeout "
                f"{self.scheduler_http_timeout:g}s): filter blocks the scheduling thread"
            )
        try:
            self.artifact_cache_config()
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ConfigError("--client-ca needs --tls-cert and --tls-key (mTLS is TLS first)")
        if self.tls_reload_interval <= 0:
            raise ConfigError("--tls-reload-interval must be positive")
        if self.drift_interval <= 0:
            raise ConfigError("--drift-interval must be positive")
        return self

    def artifact_cache_config(self) -> ArtifactCacheConfig:
        from extender.artifacts.registry_source import ArtifactCacheConfig  # noqa: PLC0415

        return ArtifactCacheConfig(
            tag_ttl=self.tag_ttl,
            referrers_ttl=self.referrers_ttl,
            negative_ttl=self.negative_ttl,
            error_ttl=self.error_ttl,
            stale_for=self.stale_for,
            max_entries=self.artifact_cache_size,
            max_specs=self.spec_cache_size,
        )

    @property
    def effective_artifact_source(self) -> ArtifactSourceKind:
        """``auto`` is the spec map when one is given, else the registries."""
        if self.artifact_source is not ArtifactSourceKind.AUTO:
            return self.artifact_source
        if self.spec_map is not None:
            return ArtifactSourceKind.SPEC_MAP
        return ArtifactSourceKind.REGISTRY

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def effective_feature_source(self) -> FeatureSourceKind:
        """``auto`` is the file when one is given, else the API server."""
        if self.feature_source is not FeatureSourceKind.AUTO:
            return self.feature_source
        if self.features_file is not None:
            return FeatureSourceKind.FILE
        return FeatureSourceKind.KUBERNETES

    @property
    def watched_namespaces(self) -> tuple[str, ...]:
        """NodeFeature namespaces to watch: NFD's unless others (or ``*``) are named."""
        if ALL_NAMESPACES in self.nodefeature_namespaces:
            return (ALL_NAMESPACES,)
        return self.nodefeature_namespaces or (self.nfd_namespace,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option as a flag; defaults stay None so environment variables can apply."""
    for option in OPTIONS:
        text = f"{option.help} Default: {option.default or 'none'}. Env: {option.env}."
        text = text.replace("%", "%%")
        if option.boolean:
            parser.add_argument(
                option.flag,
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        elif option.repeatable:
            parser.add_argument(
                option.flag,
                dest=option.field,
                action="append",
                default=None,
                metavar=option.metavar,
                help=text,
            )
        else:
            parser.add_argument(
                option.flag, dest=option.field, default=None, metavar=option.metavar, help=text
            )


def settings_from(args: argparse.Namespace | None, environ: Mapping[str, str]) -> Settings:
    """Settings from parsed flags, then environment variables, then defaults."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = getattr(args, option.field, None) if args is not None else None
        if given is not None:
            source = option.flag
            if isinstance(given, bool):
                values[option.field] = given
                continue
            text = ",".join(given) if isinstance(given, list) else str(given)
        elif option.env in environ:
            source, text = option.env, environ[option.env]
        else:
            continue
        try:
            values[option.field] = option.parse(text)
        except ValueError as err:
            raise ConfigError(f"{source}: {err}") from None
    return Settings(**values).check()


def markdown_table() -> str:
    """The configuration reference (docs/configuration.md is generated from it)."""
    rows = [
        "| Flag | Environment variable | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for option in OPTIONS:
        flag = f"`{option.flag}`" + (f" / `--no-{option.flag[2:]}`" if option.boolean else "")
        default = f"`{option.default}`" if option.default else "(none)"
        text = option.help.replace("|", "\\|")
        rows.append(f"| {flag} | `{option.env}` | {default} | {text} |")
    return "\n".join(rows) + "\n"


_CONFIGURATION_PAGE = """\
# Configuration

<!-- Generated from extender/server/config.py (OPTIONS) by `make docs`; edit there, not here.
     tests/server/test_docs.py fails when this file is stale. -->

`image-compat-extender serve` reads every setting from a flag or from an environment
variable named `IMAGE_COMPAT_` + the flag in upper case. A flag wins over its variable, which
wins over the default. Repeatable flags also take a comma list (and so do their variables).
A bad value stops `serve` before it starts, with a message naming the flag or variable.

```sh
# Flags
image-compat-extender serve --listen 0.0.0.0:8888 --spec-map /etc/image-compat/map.yaml \\
    --log-format json --access-log

# The same with environment variables (a Deployment's `env:`)
IMAGE_COMPAT_LISTEN=0.0.0.0:8888 IMAGE_COMPAT_SPEC_MAP=/etc/image-compat/map.yaml \\
IMAGE_COMPAT_LOG_FORMAT=json IMAGE_COMPAT_ACCESS_LOG=true image-compat-extender serve

# HTTPS with client certificates (mTLS), for scheduler-config/image-compat-scheduler-tls.yaml
image-compat-extender serve --listen 0.0.0.0:8888 \\
    --tls-cert /etc/image-compat/tls/tls.crt --tls-key /etc/image-compat/tls/tls.key \\
    --client-ca /etc/image-compat/client-ca/ca.crt
```

Durations are Go style (`300ms`, `2s`, `1m30s`) or plain seconds; sizes are bytes or take
`Ki`, `Mi`, `Gi` (or decimal `K`, `M`, `G`); booleans are `true`/`false` (`1`/`0`,
`yes`/`no`, `on`/`off`).

"""


def configuration_page() -> str:
    """docs/configuration.md: how settings are given, then :func:`markdown_table`."""
    return _CONFIGURATION_PAGE + markdown_table()
