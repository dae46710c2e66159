"""``explain``'s command line: what it refuses before it talks to anything."""

from __future__ import annotations

import pytest

from extender.cli import EXIT_ERROR, EXIT_USAGE, main


@pytest.mark.parametrize("target", ["web", "shop/", "/web", "shop/web/x"])
def test_a_pod_is_namespace_slash_name(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", target, "--server", "http://127.0.0.1:9"]) == EXIT_USAGE
    assert "give the pod as NAMESPACE/NAME" in capsys.readouterr().err


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) on loopback: nothing listens in the test environment.
    assert main(["explain", "shop/web", "--server", "http://127.0.0.1:9"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("image-compat-extender explain: error: http://127.0.0.1:9: ")
    assert len(err.splitlines()) == 1


def test_local_mode_without_a_cluster_says_what_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["explain", "shop/web", "--kubeconfig", "/nonexistent/kubeconfig"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "image-compat-extender explain: error: " in err
    assert "Kubernetes configuration" in err
