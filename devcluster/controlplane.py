"""A real local Kubernetes control plane: etcd, kube-apiserver and kube-scheduler processes.

Owns the components (started on free 127.0.0.1 ports with ``devcluster.processes``, ready
when their health endpoints say so, logs in files) and the small cluster helpers tests need:
Nodes without a kubelet, CRDs, namespaces and a ``kubernetes`` API client.

Start control planes from the main thread (as pytest and the CLI do): only there do the
components die with this process even when it is SIGKILLed (see ``devcluster.processes``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devcluster import build
from devcluster.pki import ClusterPKI
from devcluster.processes import (
    LOG_TAIL_LINES,
    ManagedProcess,
    ProcessError,
    child_env,
    free_port,
    http_probe,
)

__all__ = [
    "DEFAULT_SCHEDULER_CONFIG",
    "ControlPlane",
    "ControlPlaneError",
]


class ControlPlaneError(ProcessError):
    """A component failed to start, stop or answer in time; the message names its log file."""


# ---------------------------------------------------------------------------------------------
# The control plane

DEFAULT_SCHEDULER_CONFIG: dict[str, Any] = {
    "apiVersion": "kubescheduler.config.k8s.io/v1",
    "kind": "KubeSchedulerConfiguration",
    "leaderElection": {"leaderElect": False},
    "profiles": [{"schedulerName": "default-scheduler"}],
}

# free_port() and the child's bind are not atomic: another process (a parallel test run) can
# take the port in between. Such a start is retried on fresh ports.
_PORT_ATTEMPTS = 3


def _port_taken(err: ControlPlaneError) -> bool:
    return "address already in use" in str(err)


_READY_TIMEOUT = {"etcd": 30.0, "kube-apiserver": 90.0, "kube-scheduler": 60.0}


@dataclass
class _Scheduler:
    name: str
    process: ManagedProcess
    config_path: Path
    port: int


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-schedulers under one working directory.

    >>> with ControlPlane() as cp:
    ...     cp.create_node("n1")
    ...     api = cp.api_client()

    Layout of ``workdir``: ``pki/``, ``etcd/`` (data), ``logs/<component>.log``,
    ``admin.kubeconfig``, ``scheduler-<name>.yaml``.
    """

    workdir: Path | None = None
    cleanup: bool = True  # remove workdir on stop() (only if we created it)
    log_level: int = 2  # -v for kube-scheduler: 2 shows each binding decision
    ready_timeout: dict[str, float] = field(default_factory=lambda: dict(_READY_TIMEOUT))

    def __post_init__(self) -> None:
        self._own_workdir = self.workdir is None
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="devcluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dir: Path = self.workdir
        self.log_dir = self.dir / "logs"
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.schedulers: dict[str, _Scheduler] = {}
        self.pki: ClusterPKI | None = None
        self.etcd_port = 0
        self.etcd_peer_port = 0
        self.apiserver_port = 0
        self._api_clients: list[Any] = []
        self._helper_client: Any = None

    # -- whole-cluster lifecycle ---------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(
        self, scheduler_config: Mapping[str, Any] | Path | str | None = DEFAULT_SCHEDULER_CONFIG
    ) -> ControlPlane:
        """Start etcd, kube-apiserver and (unless ``scheduler_config`` is None) kube-scheduler."""
        # Build first (may take minutes on a cold machine) so that timeouts below measure
        # startup only.
        build.build_all(["etcd", "kube-apiserver", "kube-scheduler", "kubectl"])
        try:
            self.start_etcd()
            self.start_apiserver()
            if scheduler_config is not None:
                self.start_scheduler(scheduler_config)
        except BaseException:
            self.stop(remove=False)
            raise
        return self

    def stop(self, remove: bool | None = None) -> None:
        """Stop every process (schedulers, apiserver, etcd) and optionally remove workdir."""
        for client in self._api_clients:
            with contextlib.suppress(Exception):
                client.close()
        self._api_clients.clear()
        self._helper_client = None
        for name in list(self.schedulers):
            self.stop_scheduler(name)
        self.stop_apiserver()
        if self.etcd is not None:
            self.etcd.stop()
        remove = self.cleanup and self._own_workdir if remove is None else remove
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def processes(self) -> list[ManagedProcess]:
        procs = [p for p in (self.etcd, self.apiserver) if p is not None]
        return procs + [s.process for s in self.schedulers.values()]

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of every component log, for test failure reports."""
        parts = []
        for p in self.processes():
            state = "running" if p.alive() else f"exited {p.proc.returncode if p.proc else '-'}"
            parts.append(f"--- {p.name} ({state}) {p.log_path} ---\n{p.tail(lines)}")
        return "\n".join(parts)

    def _process(self, name: str, argv: list[str]) -> ManagedProcess:
        return ManagedProcess(
            name, argv, self.log_dir / f"{name}.log", child_env(), error=ControlPlaneError
        )

    # -- etcd ----------------------------------------------------------------------------------

    def start_etcd(self) -> None:
        if self.etcd is not None and self.etcd.alive():
            return
        for attempt in range(_PORT_ATTEMPTS):
            fresh = not self.etcd_port
            if fresh:
                self.etcd_port, self.etcd_peer_port = free_port(), free_port()
            try:
                self._start_etcd_once()
                return
            except ControlPlaneError as e:
                if not (fresh and _port_taken(e)) or attempt == _PORT_ATTEMPTS - 1:
                    raise
                assert self.etcd is not None
                self.etcd.stop()
                self.etcd_port = 0
                shutil.rmtree(self.dir / "etcd", ignore_errors=True)  # holds the old peer URL

    def _start_etcd_once(self) -> None:
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        argv = [
            str(build.binary("etcd")),
            "--name=devcluster",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devcluster={peer_url}",
            "--unsafe-no-fsync=true",  # test data: durability traded for a large speed-up
            "--log-level=warn",
        ]
        self.etcd = self._process("etcd", argv)
        self.etcd.start()
        self.etcd.wait_ready(
            lambda: http_probe(f"{client_url}/health", None, '"health":"true"'),
            self.ready_timeout["etcd"],
        )

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    # -- kube-apiserver ------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The apiserver URL (stable across restarts)."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def _admin_ssl(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        ctx.load_cert_chain(self.pki.admin_cert_file, self.pki.admin_key_file)
        return ctx

    def start_apiserver(self, extra_args: Iterable[str] = ()) -> None:
        """Start (or restart) kube-apiserver on the same port, with the same PKI and etcd data."""
        if self.apiserver is not None and self.apiserver.alive():
            return
        if self.etcd is None or not self.etcd.alive():
            raise ControlPlaneError("start etcd before kube-apiserver")
        if self.pki is None:
            self.pki = ClusterPKI.create(self.dir / "pki")
        for attempt in range(_PORT_ATTEMPTS):
            # A restart keeps its port (clients hold the URL); only a first start may move.
            fresh = not self.apiserver_port
            if fresh:
                self.apiserver_port = free_port()
                self.pki.write_admin_kubeconfig(self.kubeconfig, self.server)
            try:
                self._start_apiserver_once(list(extra_args))
                return
            except ControlPlaneError as e:
                if not (fresh and _port_taken(e)) or attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.apiserver_port = 0

    def _start_apiserver_once(self, extra_args: list[str]) -> None:
        assert self.pki is not None
        pki = self.pki
        argv = [
            str(build.binary("kube-apiserver")),
            # envtest's flag set (controller-runtime pkg/internal/testing/controlplane).
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={pki.cert_dir}",  # holds apiserver.crt/.key issued by our serving CA
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            # Without it the apiserver looks for a host interface with a default route, which
            # sandboxes and offline CI machines may not have.
            "--advertise-address=127.0.0.1",
            # No kube-proxy or Service IPs are used; only the required range.
            "--service-cluster-ip-range=10.0.0.0/24",
            # The default reconciler would publish 127.0.0.1 as the `kubernetes` Service's
            # endpoint, which Endpoints validation refuses (loopback), logging errors forever.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # No kube-controller-manager creates default ServiceAccounts, so pods would be
            # rejected by the ServiceAccount admission plugin.
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={pki.sa_pub_file}",
            f"--service-account-signing-key-file={pki.sa_key_file}",
            f"--client-ca-file={pki.client_ca_file}",
            # Front-proxy (request-header) auth as kubeadm sets it up; see ClusterPKI.
            f"--requestheader-client-ca-file={pki.front_proxy_ca_file}",
            f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_client_files[0]}",
            f"--proxy-client-key-file={pki.front_proxy_client_files[1]}",
            *extra_args,
        ]
        self.apiserver = self._process("kube-apiserver", argv)
        self.apiserver.start()
        ctx = self._admin_ssl()
        self.apiserver.wait_ready(
            lambda: http_probe(f"{self.server}/readyz", ctx, "ok"),
            self.ready_timeout["kube-apiserver"],
            interval=0.25,
        )

    def stop_apiserver(self, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGKILL when ``kill``); etcd and its data stay."""
        if self.apiserver is not None:
            if kill:
                self.apiserver.kill()
            else:
                self.apiserver.stop()

    def restart_apiserver(self, kill: bool = False) -> None:
        self.stop_apiserver(kill=kill)
        self.start_apiserver()

    # -- kube-scheduler ------------------------------------------------------------------------

    def start_scheduler(
        self,
        config: Mapping[str, Any] | Path | str = DEFAULT_SCHEDULER_CONFIG,
        name: str = "kube-scheduler",
        extra_args: Iterable[str] = (),
    ) -> ManagedProcess:
        """Start a kube-scheduler with a KubeSchedulerConfiguration (a mapping or a file path).

        Several can run side by side under different ``name``s (e.g. a dedicated scheduler
        pointed at an extender, next to the default one); give their profiles distinct
        ``schedulerName``s. ``clientConnection.kubeconfig`` defaults to the admin kubeconfig
        and ``leaderElection.leaderElect`` to false, since a second scheduler would otherwise
        wait forever for the default one's lease.
        """
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ValueError(f"scheduler name {name!r}: use lowercase letters, digits and '-'")
        if name in self.schedulers and self.schedulers[name].process.alive():
            raise ControlPlaneError(f"a scheduler named {name!r} is already running")
        if self.apiserver is None or not self.apiserver.alive():
            raise ControlPlaneError("start kube-apiserver before kube-scheduler")
        assert self.pki is not None
        if isinstance(config, str | Path):
            doc = yaml.safe_load(Path(config).read_text())
        else:
            doc = json.loads(json.dumps(config))  # deep copy; we fill in defaults below
        doc.setdefault("apiVersion", "kubescheduler.config.k8s.io/v1")
        doc.setdefault("kind", "KubeSchedulerConfiguration")
        doc.setdefault("clientConnection", {}).setdefault("kubeconfig", str(self.kubeconfig))
        doc.setdefault("leaderElection", {}).setdefault("leaderElect", False)
        config_path = self.dir / f"scheduler-{name}.yaml"
        config_path.write_text(yaml.safe_dump(doc, sort_keys=False))

        # Serve /readyz on a loopback port with a cert from our CA, so readiness is a real
        # probe ("informers synced"), not a guess.
        cert_dir = self.dir / f"scheduler-{name}"
        serving = self.pki.serving_ca.issue_server_cert(["localhost", "127.0.0.1"], cn=name)
        crt, key = serving.write(cert_dir / "tls.crt", cert_dir / "tls.key")
        for attempt in range(_PORT_ATTEMPTS):
            try:
                return self._start_scheduler_once(
                    name, config_path, (crt, key), free_port(), list(extra_args)
                )
            except ControlPlaneError as e:
                if not _port_taken(e) or attempt == _PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_scheduler_once(
        self,
        name: str,
        config_path: Path,
        tls: tuple[Path, Path],
        port: int,
        extra_args: list[str],
    ) -> ManagedProcess:
        assert self.pki is not None
        crt, key = tls
        kc = str(self.kubeconfig)
        argv = [
            str(build.binary("kube-scheduler")),
            f"--config={config_path}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={crt}",
            f"--tls-private-key-file={key}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            f"-v={self.log_level}",
            *extra_args,
        ]
        proc = self._process(name, argv)
        self.schedulers[name] = _Scheduler(name, proc, config_path, port)
        proc.start()
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        proc.wait_ready(
            lambda: http_probe(f"https://127.0.0.1:{port}/readyz", ctx, "ok"),
            self.ready_timeout["kube-scheduler"],
        )
        return proc

    def stop_scheduler(self, name: str = "kube-scheduler") -> None:
        sched = self.schedulers.pop(name, None)
        if sched is not None:
            sched.process.stop()

    # -- clients -------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for a shell or subprocess: KUBECONFIG, and our kubectl first on PATH."""
        bindir = str(build.bin_dir())
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": f"{bindir}:{os.environ['PATH']}"}

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as the admin (system:masters)."""
        from kubernetes import config

        client = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        self._api_clients.append(client)
        return client

    def _client(self) -> Any:
        # One client for the helpers: a fresh ApiClient per call would pile up connection pools.
        if self._helper_client is None:
            self._helper_client = self.api_client()
        return self._helper_client

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run our kubectl against this cluster."""
        return subprocess.run(
            [str(build.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            input=input,
        )

    # -- cluster helpers -----------------------------------------------------------------------

    def create_node(
        self,
        name: str,
        *,
        cpu: str = "32",
        memory: str = "128Gi",
        pods: str = "110",
        arch: str = "amd64",
        os_name: str = "linux",
        labels: Mapping[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        extra_capacity: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a Ready Node with no kubelet behind it; returns the created object as a dict.

        Nothing ever marks it NotReady (no kube-controller-manager runs), so it stays
        schedulable: pods get bound to it and then stay Pending, which is what scheduling
        tests assert on.
        """
        from kubernetes import client

        api = client.CoreV1Api(self._client())
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        capacity = {"cpu": cpu, "memory": memory, "pods": pods, **(extra_capacity or {})}
        # Plain dicts are accepted by the client at runtime; `Any` keeps its stubs quiet.
        body: Any = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": os_name,
                    "kubernetes.io/arch": arch,
                    **(labels or {}),
                },
            },
            "spec": {"taints": taints or []},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "devcluster fake node (no kubelet)",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "nodeInfo": {
                    "architecture": arch,
                    "operatingSystem": os_name,
                    "kubeletVersion": build.versions()["kube-apiserver"],
                    # The remaining NodeSystemInfo fields are required by the API schema.
                    "bootID": "",
                    "containerRuntimeVersion": "",
                    "kernelVersion": "",
                    "kubeProxyVersion": "",
                    "machineID": "",
                    "osImage": "",
                    "systemUUID": "",
                },
            },
        }
        api.create_node(body)
        # The TaintNodesByCondition admission plugin adds node.kubernetes.io/not-ready on
        # create; normally the node lifecycle controller lifts it once the kubelet reports
        # Ready. No controller runs here, so set the wanted taints ourselves (a JSON patch:
        # `add` replaces the whole list).
        patch: Any = [{"op": "add", "path": "/spec/taints", "value": taints or []}]
        api.patch_node(name, patch)
        # Node create keeps .status today; patch it anyway if some version ever drops it.
        created = api.read_node(name)
        if not created.status or not created.status.allocatable:
            created = api.patch_node_status(name, {"status": body["status"]})
        result: dict[str, Any] = api.api_client.sanitize_for_serialization(created)
        return result

    def delete_node(self, name: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            client.CoreV1Api(self._client()).delete_node(name)
        except ApiException as e:
            if e.status != 404:
                raise

    def install_crd(self, crd: Mapping[str, Any] | str | Path, timeout: float = 30) -> str:
        """Create (or update) a CRD from a mapping, YAML text or file; wait until it is served."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        if isinstance(crd, Path):
            doc = yaml.safe_load(crd.read_text())
        elif isinstance(crd, str):
            doc = yaml.safe_load(crd)
        else:
            doc = json.loads(json.dumps(crd))
        name = doc["metadata"]["name"]
        api = client.ApiextensionsV1Api(self._client())
        try:
            api.create_custom_resource_definition(doc)
        except ApiException as e:
            if e.status != 409:
                raise
            # Shared cluster: another test installed it first; bring it to this definition.
            current = api.read_custom_resource_definition(name)
            doc["metadata"]["resourceVersion"] = (
                current.metadata and current.metadata.resource_version
            )
            api.replace_custom_resource_definition(name, doc)
        deadline = time.monotonic() + timeout
        conditions: list[Any] = []
        while time.monotonic() < deadline:
            got = api.read_custom_resource_definition(name)
            conditions = (got.status.conditions if got.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            time.sleep(0.1)
        else:
            summary = [(c.type, c.status, c.message) for c in conditions]
            raise ControlPlaneError(
                f"CRD {name} not Established within {timeout:.0f}s; conditions: {summary}"
            )
        # Established is not yet "served": right after a create or update the handler may
        # answer 429 (Retry-After) or 404 while it (re)builds the storage. Wait for a list.
        spec = doc["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("served", True))
        path = f"/apis/{spec['group']}/{version}/{spec['names']['plural']}?limit=1"
        last = ""
        while time.monotonic() < deadline:
            try:
                self.request("GET", path, timeout=5)
                return str(name)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            time.sleep(0.1)
        raise ControlPlaneError(f"CRD {name} Established but GET {path} still fails ({last})")

    def create_namespace(
        self, name: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str:
        from kubernetes import client

        name = name or f"t-{uuid.uuid4().hex[:8]}"
        body: Any = {"metadata": {"name": name, "labels": dict(labels or {})}}
        client.CoreV1Api(self._client()).create_namespace(body)
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace and everything in it, without a namespace controller.

        No kube-controller-manager runs, so a plain delete would leave the namespace
        Terminating forever and its pods still counted on their nodes. We do the controller's
        job: delete every namespaced collection (pods with grace period 0, as no kubelet will
        confirm), then clear the namespace's finalizer.
        """
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
        for prefix, resource in self._namespaced_collections():
            # Best effort: some kinds refuse deletecollection in odd states; the namespace
            # itself is removed below either way.
            with contextlib.suppress(urllib.error.HTTPError):
                self.request("DELETE", f"{prefix}/namespaces/{name}/{resource}", body)
        core = client.CoreV1Api(self._client())
        try:
            core.delete_namespace(name)
            finalized: Any = {"metadata": {"name": name}, "spec": {"finalizers": []}}
            core.replace_namespace_finalize(name, finalized)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float = 30,
        content_type: str = "application/json",
    ) -> Any:
        """A raw JSON call to the apiserver as admin (independent of the python client's API).

        ``content_type`` picks the patch flavour for PATCH (e.g.
        ``application/merge-patch+json``). Raises ``urllib.error.HTTPError`` for non-2xx answers.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.server}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=self._admin_ssl(), timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def _namespaced_collections(self) -> list[tuple[str, str]]:
        """(path prefix, resource) for every namespaced resource that supports deletecollection."""
        prefixes = [f"/api/{v}" for v in self.request("GET", "/api")["versions"]]
        for group in self.request("GET", "/apis")["groups"]:
            prefixes.append(f"/apis/{group['preferredVersion']['groupVersion']}")
        out = []
        for prefix in prefixes:
            for r in self.request("GET", prefix)["resources"]:
                if r["namespaced"] and "/" not in r["name"] and "deletecollection" in r["verbs"]:
                    out.append((prefix, r["name"]))
        # Pods first: they are what holds node capacity.
        out.sort(key=lambda pr: pr[1] != "pods")
        return out
