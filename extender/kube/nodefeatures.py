"""The API calls behind the feature watches: NodeFeature objects and Node metadata.

Owns the NodeFeature API coordinates (``nfd.k8s-sigs.io/v1alpha1``), the list (and watch)
calls for one namespace or all, and the Node list as metadata only, which is all the feature
source needs from Nodes and a fraction of their size.
"""

from __future__ import annotations

from typing import Any

from extender.kube.client import kubernetes_client_module

__all__ = [
    "ALL_NAMESPACES",
    "ARCH_LABEL",
    "LIST_TIMEOUT_S",
    "NODEFEATURE_GROUP",
    "NODEFEATURE_VERSION",
    "OS_LABEL",
    "list_node_metadata",
    "list_nodefeatures",
]

NODEFEATURE_GROUP, NODEFEATURE_VERSION, NODEFEATURE_PLURAL = (
    "nfd.k8s-sigs.io",
    "v1alpha1",
    "nodefeatures",
)
ALL_NAMESPACES = "*"
LIST_TIMEOUT_S = (10, 60)  # (connect, read): a page of 200 NodeFeatures is ~20 MB at worst
OS_LABEL, ARCH_LABEL = "kubernetes.io/os", "kubernetes.io/arch"
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
_METADATA_ONE = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json"


def list_node_metadata(api_client: Any, **kwargs: Any) -> Any:
    """List (or, with ``watch=True``, watch) Nodes as PartialObjectMetadata: names and labels."""
    accept = _METADATA_ONE if kwargs.get("watch") else _METADATA_LIST
    core = kubernetes_client_module().CoreV1Api(api_client)
    return core.list_node(**kwargs, _headers={"Accept": accept})


def list_nodefeatures(api_client: Any, namespace: str, **kwargs: Any) -> Any:
    """List (or watch) NodeFeature objects of one namespace, or of all with ALL_NAMESPACES."""
    api = kubernetes_client_module().CustomObjectsApi(api_client)
    args = (NODEFEATURE_GROUP, NODEFEATURE_VERSION)
    if namespace == ALL_NAMESPACES:
        return api.list_cluster_custom_object(*args, NODEFEATURE_PLURAL, **kwargs)
    return api.list_namespaced_custom_object(*args, namespace, NODEFEATURE_PLURAL, **kwargs)
