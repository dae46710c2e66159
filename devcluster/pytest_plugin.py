"""pytest fixtures for the real local control plane (loaded via ``pytest_plugins``).

Owns the fixtures and hooks only; processes and helpers live in ``devcluster.controlplane``.

Session-scoped, started lazily by the first test that asks for it and shared by the whole run:

- ``devcluster``: the ``ControlPlane`` (etcd + kube-apiserver + default kube-scheduler);
- ``k8s_api``: a ``kubernetes.client.ApiClient`` for it, as admin.

Function-scoped:

- ``k8s_namespace``: a fresh namespace, emptied and removed after the test;
- ``make_node``: ``make_node(name=None, **kwargs)`` creates a fake Node (see
  ``ControlPlane.create_node``) and deletes it after the test.

Tests that use ``devcluster`` (directly or through another fixture) get the ``integration``
marker automatically, so ``-m "not integration"`` runs without Go or processes. When such a
test fails, its report carries the tail of every component log. ``--devcluster-keep`` (or
``DEVCLUSTER_KEEP=1``) keeps the working directory; it is also kept when a test failed.
"""

from __future__ import annotations

import copy
import os
import re
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane

_ACTIVE: list[ControlPlane] = []

MakeNode = Callable[..., dict[str, Any]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devcluster")
    group.addoption(
        "--devcluster-keep",
        action="store_true",
        default=bool(os.environ.get("DEVCLUSTER_KEEP")),
        help="keep the devcluster working directory (logs, etcd data, kubeconfig) after the run",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated here so the plugin works under --strict-markers
    # wherever it is loaded.
    config.addinivalue_line("markers", "integration: needs a real component started by devcluster")
    config.addinivalue_line("markers", "e2e: real kube-scheduler + extender placing pods")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "devcluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def devcluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    cp = ControlPlane(cleanup=False)
    _ACTIVE.append(cp)
    try:
        cp.start()
    except BaseException:
        _ACTIVE.remove(cp)
        cp.stop(remove=False)
        raise
    yield cp
    keep = request.config.getoption("--devcluster-keep") or request.session.testsfailed > 0
    cp.stop(remove=not keep)
    if keep:
        request.config.stash[_KEPT] = str(cp.dir)
    _ACTIVE.remove(cp)


_KEPT = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def k8s_api(devcluster: ControlPlane) -> Any:
    return devcluster.api_client()


def _dns_label(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def k8s_namespace(devcluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    # Named after the test, so leftovers and events are easy to attribute.
    name = f"{_dns_label(request.node.name, 50) or 't'}-{uuid.uuid4().hex[:6]}"
    devcluster.create_namespace(name, labels={"devcluster/test": "true"})
    yield name
    devcluster.delete_namespace(name)


@pytest.fixture(scope="session")
def _host_nodefeature(devcluster: ControlPlane) -> dict[str, Any]:
    from devcluster import nfd

    return nfd.publish_host(devcluster)


@pytest.fixture
def host_nodefeature(_host_nodefeature: dict[str, Any]) -> dict[str, Any]:
    """The NodeFeature NFD's real nfd-worker published for this machine (a fresh copy)."""
    return copy.deepcopy(_host_nodefeature)


@pytest.fixture
def make_node(devcluster: ControlPlane) -> Iterator[MakeNode]:
    created: list[str] = []

    def make(name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        name = name or f"fake-{uuid.uuid4().hex[:8]}"
        node = devcluster.create_node(name, **kwargs)
        created.append(name)
        return node

    yield make
    for name in created:
        devcluster.delete_node(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and _ACTIVE and "devcluster" in getattr(item, "fixturenames", ()):
        for cp in _ACTIVE:
            report.sections.append(("devcluster component logs", cp.log_tails()))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, None)
    if kept:
        terminalreporter.write_line(f"devcluster: logs and data kept in {kept}")
