"""The official Kubernetes client, loaded on first use, and API clients built from kubeconfig.

Reading a configuration (a kubeconfig file, or the pod's in-cluster service account) and
building a client are separate steps, so that ``serve`` can refuse a bad configuration before
it starts and still build its one client where the client is also closed (``cleanup_ctx``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "kubernetes_api_client",
    "kubernetes_client_module",
    "load_configuration",
]


def kubernetes_client_module() -> Any:
    # Imported on first use: the offline commands (validate, check-spec) read features too and
    # should not pay the official client's import time.
    from kubernetes import client  # noqa: PLC0415

    return client


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A client ``Configuration`` from ``kubeconfig``, else in-cluster, else the default
    kubeconfig. Raises what the client raises (ConfigException, OSError, ValueError...)."""
    from kubernetes import config  # noqa: PLC0415 - see kubernetes_client_module

    configuration = kubernetes_client_module().Configuration()
    if kubeconfig:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(context=context, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


def kubernetes_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An official-client ApiClient from a kubeconfig, or in-cluster configuration.

    The caller owns it: ``close()`` it when done (its connection pool and thread pool).
    """
    return kubernetes_client_module().ApiClient(
        configuration=load_configuration(kubeconfig, context)
    )
