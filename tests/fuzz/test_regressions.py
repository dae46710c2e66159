"""Each crash the fuzz targets found, as a plain test on the minimal input."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from extender.nfd.spec import SpecError, parse_spec
from extender.server.app import create_app
from extender.server.config import ArtifactSourceKind, FeatureSourceKind, Settings


@pytest.mark.parametrize(
    "document",
    [
        # JSON writes U+10000 as the escaped UTF-16 pair; PyYAML keeps its two halves.
        '{"version": "v1alpha1", "compatibilities": [{"description": "\\ud800\\udc00"}]}',
        'version: v1alpha1\ncompatibilities: [{rules: [{name: "\\udc00"}]}]\n',
        'version: v1alpha1\n"\\ud800": 1\n',
    ],
    ids=["escaped-pair", "lone-low-half", "in-a-key"],
)
def test_surrogate_escapes_are_a_spec_error(document: str) -> None:
    # go-yaml refuses these escapes; here they once raised UnicodeEncodeError.
    with pytest.raises(SpecError, match="surrogate"):
        parse_spec(document)
    with pytest.raises(SpecError, match="surrogate"):
        parse_spec(document.encode())


def test_characters_beyond_the_bmp_written_as_themselves_are_read() -> None:
    spec = parse_spec(
        'version: v1alpha1\ncompatibilities: [{description: "\U0001f600 \\U0001F600"}]\n'
    )
    assert spec.compatibilities[0].description == "\U0001f600 \U0001f600"


@pytest.mark.parametrize(
    ("method", "path", "encoding"),
    [("GET", "/healthz", "gzip"), ("POST", "/nowhere", "deflate"), ("GET", "/filter", "gzip")],
)
async def test_unread_body_that_does_not_inflate_logs_no_traceback(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture, method: str, path: str, encoding: str
) -> None:
    # aiohttp read such a body after the answer, logged "Unhandled exception" with a
    # traceback and dropped the kept-alive connection under the client's next request.
    settings = Settings(
        feature_source=FeatureSourceKind.NONE, artifact_source=ArtifactSourceKind.NONE
    )
    client = await aiohttp_client(create_app(settings))
    with caplog.at_level(logging.ERROR):
        response = await client.request(
            method, path, data=b"garbage", headers={"Content-Encoding": encoding}
        )
        assert response.status in (200, 404, 405)
        assert "error" in await response.json() or response.status == 200
        again = await client.get("/healthz")
        assert again.status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


NOT_UTF8_IN_A_NODE = b'{"Pod": {}, "Nodes": {"items": [{"metadata": {"name": "\x9a"}}]}}'
NOT_UTF8_IN_THE_POD = b'{"Pod": {"metadata": {"name": "\xff"}}, "NodeNames": [], "PodName": "\xc3"}'


@pytest.mark.parametrize(
    ("verb", "body"),
    [
        ("filter", NOT_UTF8_IN_A_NODE),
        ("prioritize", NOT_UTF8_IN_A_NODE),
        ("filter", NOT_UTF8_IN_THE_POD),
        ("prioritize", NOT_UTF8_IN_THE_POD),
        ("preempt", NOT_UTF8_IN_THE_POD),
        ("bind", NOT_UTF8_IN_THE_POD),
    ],
)
async def test_string_that_is_not_utf8_is_a_bad_request(
    aiohttp_client: Any, verb: str, body: bytes
) -> None:
    # msgspec raised UnicodeDecodeError, not a DecodeError: it escaped as a 500.
    settings = Settings(
        feature_source=FeatureSourceKind.NONE, artifact_source=ArtifactSourceKind.NONE
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.post(f"/{verb}", data=body)
    assert response.status == 400
    assert "UTF-8" in (await response.json())["error"]
