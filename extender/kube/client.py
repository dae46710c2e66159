"""The official Kubernetes client, loaded on first use, and API clients built from kubeconfig."""

from __future__ import annotations

from typing import Any

__all__ = [
    "kubernetes_api_client",
]


def kubernetes_client_module() -> Any:
    # Imported on first use: the offline commands (validate, check-spec) read features too and
    # should not pay the official client's import time.
    from kubernetes import client  # noqa: PLC0415

    return client


def kubernetes_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An official-client ApiClient from a kubeconfig, or in-cluster configuration."""
    from kubernetes import config  # noqa: PLC0415 - see kubernetes_client_module

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        return config.new_client_from_config(context=context)  # type: ignore[no-untyped-call]
    return kubernetes_client_module().ApiClient()
