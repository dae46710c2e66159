"""The extender's RBAC is what its code calls, and no more.

The Kubernetes API calls in extender/ are found in the source (every ``CoreV1Api`` /
``CustomObjectsApi`` method name) and mapped to the (API group, resource, verb) they need.
The rendered RBAC must grant each of them to the extender's ServiceAccount, and must grant
nothing else except the rules listed in AHEAD_OF_CODE, each with its reason. A new API call
in the server without a rule here fails this test, naming the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from extender.features import DEFAULT_NFD_NAMESPACE
from tests.deploy.conftest import DEPLOY, NAMESPACE, ROOT, by_kind, compose, kustomize

Grant = tuple[str, str, str]  # (api group, resource, verb)

# Client method -> what it needs. A list call is followed by a watch on the same method
# (watch=True), the list-then-watch pattern of every source in extender/.
CALLS: dict[str, set[Grant]] = {
    "list_node": {("", "nodes", "list"), ("", "nodes", "watch")},
    "list_pod_for_all_namespaces": {("", "pods", "list"), ("", "pods", "watch")},
    "list_namespaced_pod": {("", "pods", "list"), ("", "pods", "watch")},
    "read_namespaced_secret": {("", "secrets", "get")},
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
    ("", "pods", "list"): "issue 13: prefetch watches unbound pods with our schedulerName",
    ("", "pods", "watch"): "issue 13: prefetch watches unbound pods with our schedulerName",
}
# Optional grants, each switched on by a component.
OPTIONAL: dict[Grant, str] = {("", "secrets", "get"): "pull-secrets"}

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
    for path in sorted((ROOT / "extender").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in _METHOD_CALL.finditer(line):
                if match.group(1) in known:
                    found.setdefault(match.group(1), []).append(f"{path.name}:{number}")
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
