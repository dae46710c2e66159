"""The artifact flags of ``serve``: defaults, the wait budget checked against the scheduler's
httpTimeout, and the source chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from extender.server.app import ArtifactSourceError, create_app
from extender.server.config import ConfigError, FeatureSourceKind, Settings, settings_from


def test_defaults_pick_the_registry_and_documented_ttls() -> None:
    settings = settings_from(None, {})
    assert settings.effective_artifact_source == "registry"
    cache = settings.artifact_cache_config()
    assert (cache.tag_ttl, cache.referrers_ttl, cache.negative_ttl, cache.error_ttl) == (
        60.0,
        60.0,
        60.0,
        5.0,
    )
    assert settings.prefetch is True


def test_spec_map_given_means_spec_map() -> None:
    settings = settings_from(None, {"IMAGE_COMPAT_SPEC_MAP": "/etc/map.yaml"})
    assert settings.effective_artifact_source == "spec-map"


def test_wait_budget_must_stay_well_under_the_scheduler_timeout() -> None:
    with pytest.raises(ConfigError, match="at most half"):
        settings_from(None, {"IMAGE_COMPAT_SPEC_WAIT_BUDGET": "1500ms"})
    ok = settings_from(
        None,
        {"IMAGE_COMPAT_SPEC_WAIT_BUDGET": "1500ms", "IMAGE_COMPAT_SCHEDULER_HTTP_TIMEOUT": "5s"},
    )
    assert ok.spec_wait_budget == 1.5


def test_bad_values_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="IMAGE_COMPAT_ARTIFACT_SOURCE"):
        settings_from(None, {"IMAGE_COMPAT_ARTIFACT_SOURCE": "ftp"})
    with pytest.raises(ConfigError, match="spec-map needs --spec-map"):
        settings_from(None, {"IMAGE_COMPAT_ARTIFACT_SOURCE": "spec-map"})
    with pytest.raises(ConfigError, match="IMAGE_COMPAT_REFERRERS_TTL"):
        settings_from(None, {"IMAGE_COMPAT_REFERRERS_TTL": "soon"})


def test_unreadable_registry_config_stops_serve(tmp_path: Path) -> None:
    settings = Settings(
        feature_source=FeatureSourceKind.NONE, registry_config=tmp_path / "missing.yaml"
    )
    with pytest.raises(ArtifactSourceError, match=r"missing\.yaml"):
        create_app(settings)
    (tmp_path / "bad.json").write_text("{not json")
    settings = Settings(feature_source=FeatureSourceKind.NONE, docker_config=tmp_path / "bad.json")
    with pytest.raises(ArtifactSourceError, match="--docker-config"):
        create_app(settings)
