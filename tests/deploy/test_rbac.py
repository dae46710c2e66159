"""The extender's RBAC is what its code calls, and no more.

The Kubernetes API calls in extender/ are found in the source (every ``CoreV1Api`` /
``CustomObjectsApi`` method name) and mapped to the (API group, resource, verb) they need.
The rendered RBAC must grant each of them to the extender's ServiceAccount, and must grant
nothing else except the rules listed in AHEAD_OF_CODE, each with its reason. A new API call
in the server without a rule here fails this test, naming the call.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.controlplane import ControlPlane
from extender.nodes.model import DEFAULT_NFD_NAMESPACE
from tests.deploy.conftest import DEPLOY, NAMESPACE, ROOT, by_kind, compose, kustomize

Grant = tuple[str, str, str]  # (api group, resource, verb)

# Client method -> what it needs. A list call is followed by a watch on the same method
# (watch=True), the list-then-watch pattern of every source in extender/.
CALLS: dict[str, set[Grant]] = {
    "list_node": {("", "nodes", "list"), ("", "nodes", "watch")},
    "list_pod_for_all_namespaces": {("", "pods", "list"), ("", "pods", "watch")},
    "list_namespaced_pod": {("", "pods", "list"), ("", "pods", "watch")},
    "read_namespaced_pod": {("", "pods", "get")},
    "read_namespaced_secret": {("", "secrets", "get")},
    # Drift labels on pods (the drift-label component); a container's chosen variant (the
    # variants component).
    "patch_namespaced_pod": {("", "pods", "patch")},
    # bind (the variants component).
    "create_namespaced_pod_binding": {("", "pods/binding", "create")},
    # Drift's events on pods (core/v1), in the pod's namespace.
    "create_namespaced_event": {("", "events", "create")},
    # NodeFeatures (nfd.k8s-sigs.io) are the only custom objects the server reads.
    "list_namespaced_custom_object": {
        ("nfd.k8s-sigs.io", "nodefeatures", "list"),
        ("nfd.k8s-sigs.io", "nodefeatures", "watch"),
    },
    "list_cluster_custom_object": {
        ("nfd.k8s-sigs.io", "nodefeatures", "list"),
        ("nfd.k8s-sigs.io", "nodefeatures", "watch"),
    },
}
# Granted before the code that uses it is merged, with the reason.
AHEAD_OF_CODE: dict[Grant, str] = {
    ("", "pods", "list"): "prefetch watches unbound pods with our schedulerName",
    ("", "pods", "watch"): "prefetch watches unbound pods with our schedulerName",
}
# Optional grants, each switched on by a component.
OPTIONAL: dict[Grant, str] = {
    ("", "secrets", "get"): "pull-secrets",
    ("", "pods", "patch"): "drift-label, variants",
    ("", "pods/binding", "create"): "variants",
}

_METHOD_CALL = re.compile(r"\.([a-z_][a-z0-9_]*)\(")


def api_methods() -> set[str]:
    """Every request method of every API class of the official client (list_node, ...)."""
    from kubernetes import client

    methods: set[str] = set()
    for name in dir(client):
        if name.endswith("Api") and name != "ApiClient":
            api = getattr(client, name)
            methods.update(m for m in dir(api) if not m.startswith("_") and "_" in m)
    methods -= {"api_client"}
    return {m.removesuffix("_with_http_info") for m in methods}


def code_calls() -> dict[str, list[str]]:
    """Kubernetes client methods called in extender/, with where."""
    known = api_methods()
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "extender").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in _METHOD_CALL.finditer(line):
                if match.group(1) in known:
                    found.setdefault(match.group(1), []).append(
                        f"{path.relative_to(ROOT)}:{number}"
                    )
    return found


def needed() -> set[Grant]:
    calls = code_calls()
    unknown = {name: where for name, where in calls.items() if name not in CALLS}
    assert not unknown, (
        f"Kubernetes API calls without an RBAC mapping: {unknown}; add them to CALLS here "
        "and the matching rule to deploy/ and the Helm chart"
    )
    return set().union(*(CALLS[name] for name in calls)) if calls else set()


def granted(
    objects: list[dict[str, Any]], account: str = "image-compat-extender"
) -> dict[Grant, set[str]]:
    """(group, resource, verb) -> namespaces ('*' = cluster-wide) granted to the account.

    A binding to a role that is not in ``objects`` (one the cluster has, such as
    system:kube-scheduler) appears as (kind, name, "(bound)").
    """
    roles = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in by_kind(objects, "Role") + by_kind(objects, "ClusterRole")
    }
    out: dict[Grant, set[str]] = {}
    for binding in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == NAMESPACE
            for s in binding["subjects"]
        ):
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace", "*")
        role_ns = scope if ref["kind"] == "Role" else ""
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:  # a role of the cluster's own (system:kube-scheduler, ...)
            out.setdefault((ref["kind"], ref["name"], "(bound)"), set()).add(scope)
            continue
        for rule in role["rules"]:
            names = rule.get("resourceNames") or [""]
            for group in rule["apiGroups"]:
                for resource in [f"{r}/{n}".rstrip("/") for r in rule["resources"] for n in names]:
                    for verb in rule["verbs"]:
                        out.setdefault((group, resource, verb), set()).add(scope)
    return out


def _wildcards(grants: Iterable[Grant]) -> list[Grant]:
    return [g for g in grants if "*" in g]


def test_every_api_call_is_mapped() -> None:
    assert needed(), "the extender reads NodeFeatures and Nodes; the scan found no call"


def test_base_rbac_is_exactly_what_the_code_calls(kubectl: Path) -> None:
    grants = granted(kustomize(kubectl, DEPLOY / "base"))
    assert not _wildcards(grants)
    need = needed() - OPTIONAL.keys()
    missing = need - grants.keys()
    assert not missing, f"the code calls the API for {missing} but the base does not grant it"
    extra = grants.keys() - need - AHEAD_OF_CODE.keys()
    assert not extra, f"the base grants {extra}, which no code in extender/ uses"


def test_nodefeatures_are_read_only_in_nfds_namespace(kubectl: Path) -> None:
    grants = granted(kustomize(kubectl, DEPLOY / "base"))
    for verb in ("list", "watch"):
        assert grants[("nfd.k8s-sigs.io", "nodefeatures", verb)] == {DEFAULT_NFD_NAMESPACE}
    for verb in ("list", "watch"):
        assert grants[("", "nodes", verb)] == {"*"}


def test_pull_secrets_component_adds_only_get_on_secrets(kubectl: Path, tmp_path: Path) -> None:
    base = granted(kustomize(kubectl, DEPLOY / "base"))
    directory = compose(tmp_path, [DEPLOY / "base"], [DEPLOY / "components" / "pull-secrets"])
    with_secrets = granted(kustomize(kubectl, directory))
    assert with_secrets.keys() - base.keys() == {("", "secrets", "get")}


def test_drift_label_component_adds_only_patch_on_pods(kubectl: Path, tmp_path: Path) -> None:
    base = granted(kustomize(kubectl, DEPLOY / "base"))
    directory = compose(tmp_path, [DEPLOY / "base"], [DEPLOY / "components" / "drift-label"])
    with_label = granted(kustomize(kubectl, directory))
    assert with_label.keys() - base.keys() == {("", "pods", "patch")}
    assert with_label[("", "pods", "patch")] == {"*"}


def test_variants_component_adds_only_patch_on_pods_and_create_on_bindings(
    kubectl: Path, tmp_path: Path
) -> None:
    base = granted(kustomize(kubectl, DEPLOY / "base"))
    directory = compose(tmp_path, [DEPLOY / "base"], [DEPLOY / "components" / "variants"])
    objects = kustomize(kubectl, directory)
    with_variants = granted(objects)
    assert with_variants.keys() - base.keys() == {
        ("", "pods", "patch"),
        ("", "pods/binding", "create"),
    }
    assert not _wildcards(with_variants)
    (config,) = [
        o
        for o in by_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("image-compat-scheduler-config")
    ]
    (extender,) = yaml.safe_load(config["data"]["config.yaml"])["extenders"]
    assert extender["bindVerb"] == "bind"


def test_scheduler_account_has_the_standard_roles_and_its_own_lease(kubectl: Path) -> None:
    objects = kustomize(kubectl, DEPLOY / "base")
    refs = {
        (b["kind"], b["roleRef"]["name"])
        for b in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding")
        if any(s["name"] == "image-compat-scheduler" for s in b["subjects"])
    }
    assert ("ClusterRoleBinding", "system:kube-scheduler") in refs
    assert ("ClusterRoleBinding", "system:volume-scheduler") in refs
    assert ("RoleBinding", "extension-apiserver-authentication-reader") in refs
    (lease_role,) = [
        r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("leader-election")
    ]
    named = [r for r in lease_role["rules"] if "resourceNames" in r]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["image-compat-scheduler"],
            "verbs": ["get", "update"],
        }
    ]


# -- The same rules, live: the real extender runs with only them ------------------------------

EXTENDER_RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def _extender_rbac(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] in EXTENDER_RBAC_KINDS
        and o["metadata"]["name"].startswith("image-compat-extender")
    ]


def _kubectl(kubectl: Path, cluster: ControlPlane, *args: str, stdin: str = "") -> str:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    done = subprocess.run(
        [str(kubectl), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}:\n{done.stderr}"
    return done.stdout


def _service_account_kubeconfig(
    kubectl: Path, cluster: ControlPlane, path: Path, account: str
) -> Path:
    token = _kubectl(
        kubectl, cluster, "-n", NAMESPACE, "create", "token", account, "--duration=10m"
    ).strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    return path


def _can_i(kubectl: Path, cluster: ControlPlane, account: str, *args: str) -> bool:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    done = subprocess.run(
        [str(kubectl), "auth", "can-i", *args, f"--as=system:serviceaccount:{NAMESPACE}:{account}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return done.stdout.strip() == "yes"


@pytest.fixture
def extender_rbac(kubectl: Path, cluster_for_deploy: ControlPlane) -> Iterator[ControlPlane]:
    """The base's RBAC for the extender, created for real (and removed afterwards)."""
    objects = _extender_rbac(kustomize(kubectl, DEPLOY / "base"))
    text = yaml.safe_dump_all(objects)
    _kubectl(kubectl, cluster_for_deploy, "apply", "-f", "-", stdin=text)
    try:
        yield cluster_for_deploy
    finally:
        _kubectl(
            kubectl,
            cluster_for_deploy,
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            "-",
            stdin=text,
        )


def test_the_authorizer_grants_what_the_rules_say(
    kubectl: Path, extender_rbac: ControlPlane
) -> None:
    account = "image-compat-extender"
    for args in (
        ("list", "nodes"),
        ("watch", "nodes"),
        ("list", "pods", "--all-namespaces"),
        ("watch", "pods", "--all-namespaces"),
        ("create", "events", "-n", "default"),
        ("get", "pods", "-n", "default"),  # GET /explain
        ("list", "nodefeatures.nfd.k8s-sigs.io", "-n", DEFAULT_NFD_NAMESPACE),
        ("watch", "nodefeatures.nfd.k8s-sigs.io", "-n", DEFAULT_NFD_NAMESPACE),
    ):
        assert _can_i(kubectl, extender_rbac, account, *args), args
    denied: tuple[tuple[str, ...], ...] = (
        ("get", "nodes"),
        ("update", "nodes"),
        ("create", "pods", "--subresource=binding", "-n", "default"),
        ("patch", "pods", "-n", "default"),
        ("delete", "pods", "-n", "default"),
        ("create", "pods/eviction", "-n", "default"),
        ("update", "events", "-n", "default"),
        ("get", "secrets", "-n", "default"),
        ("list", "nodefeatures.nfd.k8s-sigs.io", "-n", "default"),
        ("update", "nodefeatures.nfd.k8s-sigs.io", "-n", DEFAULT_NFD_NAMESPACE),
    )
    for refused in denied:
        assert not _can_i(kubectl, extender_rbac, account, *refused), refused


def _serve_readiness(kubeconfig: Path, tmp_path: Path, wait_s: float) -> tuple[int | None, str]:
    """Start serve with this identity; the /readyz status within ``wait_s``, and its log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "IMAGE_COMPAT_LISTEN": f"127.0.0.1:{port}",
        "IMAGE_COMPAT_FEATURE_SOURCE": "kubernetes",
        "IMAGE_COMPAT_KUBECONFIG": str(kubeconfig),
        "IMAGE_COMPAT_NFD_NAMESPACE": DEFAULT_NFD_NAMESPACE,
    }
    log_path = tmp_path / "serve.log"
    status = None
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "extender", "serve"], env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                        status = r.status
                        break
                except urllib.error.HTTPError as err:
                    status = err.code
                except OSError:
                    pass
                time.sleep(0.3)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return status, log_path.read_text()


def test_serve_becomes_ready_with_only_these_rules(
    kubectl: Path, extender_rbac: ControlPlane, tmp_path: Path
) -> None:
    """The real server, as the ServiceAccount, lists and watches everything it needs."""
    kubeconfig = _service_account_kubeconfig(
        kubectl, extender_rbac, tmp_path / "extender.kubeconfig", "image-compat-extender"
    )
    status, log = _serve_readiness(kubeconfig, tmp_path, wait_s=60)
    assert status == 200, log
    assert "HTTP 403" not in log


def test_serve_is_not_ready_without_the_nodefeature_role(
    kubectl: Path, extender_rbac: ControlPlane, tmp_path: Path
) -> None:
    """The readiness above is meaningful: without one rule the server cannot sync."""
    _kubectl(
        kubectl,
        extender_rbac,
        "-n",
        DEFAULT_NFD_NAMESPACE,
        "delete",
        "rolebinding",
        "image-compat-extender-nodefeatures",
    )
    kubeconfig = _service_account_kubeconfig(
        kubectl, extender_rbac, tmp_path / "extender.kubeconfig", "image-compat-extender"
    )
    status, log = _serve_readiness(kubeconfig, tmp_path, wait_s=8)
    assert status == 503, log
    assert "watch failed (HTTP 403)" in log, log


def test_pull_secrets_without_the_component_load_anonymously(
    kubectl: Path, extender_rbac: ControlPlane, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The base grants no Secret access: a pod's pull secret is skipped with one warning,
    not turned into a failure that would keep the pod Pending."""
    import asyncio

    from extender.kube.client import kubernetes_api_client
    from extender.kube.secrets import KubernetesSecrets

    extender_rbac.request(
        "POST",
        "/api/v1/namespaces/default/secrets",
        {
            "metadata": {"name": "pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30="},
        },
    )
    kubeconfig = _service_account_kubeconfig(
        kubectl, extender_rbac, tmp_path / "extender.kubeconfig", "image-compat-extender"
    )
    secrets = KubernetesSecrets(kubernetes_api_client(str(kubeconfig)))
    admin = KubernetesSecrets(kubernetes_api_client(str(extender_rbac.kubeconfig)))
    try:
        assert asyncio.run(admin.read("default", "pull")) == b"{}"  # the secret is there
        assert asyncio.run(secrets.read("default", "pull")) is None
        assert asyncio.run(secrets.read("default", "pull")) is None
    finally:
        extender_rbac.request("DELETE", "/api/v1/namespaces/default/secrets/pull")
    warnings = [r for r in caplog.records if "may not read pull secrets" in r.getMessage()]
    assert len(warnings) == 1


def test_the_variants_component_lets_bind_patch_and_bind_pods(
    kubectl: Path, extender_rbac: ControlPlane, tmp_path: Path
) -> None:
    directory = compose(tmp_path, [DEPLOY / "base"], [DEPLOY / "components" / "variants"])
    added = [
        o
        for o in _extender_rbac(kustomize(kubectl, directory))
        if o["metadata"]["name"].endswith("-variants")
    ]
    assert {o["kind"] for o in added} == {"ClusterRole", "ClusterRoleBinding"}
    text = yaml.safe_dump_all(added)
    account = "image-compat-extender"
    _kubectl(kubectl, extender_rbac, "apply", "-f", "-", stdin=text)
    # can-i reads "pods/binding" as the pod named binding: a subresource is a flag.
    binding = ("pods", "--subresource=binding", "-n", "default")
    try:
        for args in (("create", *binding), ("patch", "pods", "-n", "default")):
            assert _can_i(kubectl, extender_rbac, account, *args), args
        for args in (
            ("update", "pods", "-n", "default"),
            ("delete", "pods", "-n", "default"),
            ("create", "pods", "-n", "default"),
            ("update", *binding),
        ):
            assert not _can_i(kubectl, extender_rbac, account, *args), args
    finally:
        _kubectl(kubectl, extender_rbac, "delete", "--ignore-not-found", "-f", "-", stdin=text)
