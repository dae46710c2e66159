"""The API calls behind the feature watches: NodeFeature objects and Node metadata.

Owns the NodeFeature API coordinates (``nfd.k8s-sigs.io/v1alpha1``), the list (and watch)
calls for one namespace or all, and the Node list as metadata only, which is all the feature
source needs from Nodes and a fraction of their size.
"""

from __future__ import annotations

__all__ = [
    "ALL_NAMESPACES",
]

# --------------------------------------------------------------------------------------------
# Live features from the Kubernetes API

NODEFEATURE_GROUP, NODEFEATURE_VERSION, NODEFEATURE_PLURAL = (
    "nfd.k8s-sigs.io",
    "v1alpha1",
    "nodefeatures",
)
ALL_NAMESPACES = "*"
_LIST_TIMEOUT_S = (10, 60)  # (connect, read): a page of 200 NodeFeatures is ~20 MB at worst
_OS_LABEL, _ARCH_LABEL = "kubernetes.io/os", "kubernetes.io/arch"
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
_METADATA_ONE = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json"
