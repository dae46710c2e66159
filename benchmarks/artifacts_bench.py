"""Artifact-source benchmark: spec load latency cold vs warm, requests per fetch, hit ratios.

Against real registries (go-containerregistry with the referrers API, and without it so the
``sha256-<hex>`` tag schema is used), with specs attached by the real ``oras attach``:

* **cold**: a fresh :class:`RegistrySource` loads an image's spec (resolve, referrers,
  artifact manifest, spec blob, compile);
* **warm load**: ``load`` again with every cache fresh;
* **hot path**: ``get_cached``, what filter and prioritize call;
* **requests per cold load**, from the registry client's counter;
* **a run**: PODS pods over IMAGES multi-platform images, each prefetched for two platforms
  then filtered; the hit and miss counters of every cache.

Median over the images. Prints a table, writes ``benchmarks/results/artifacts.json`` and
``artifacts.png``. No timing is asserted anywhere: numbers depend on the machine (and loopback
registries are fast).

    .venv/bin/python benchmarks/artifacts_bench.py [--images N] [--pods N] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_output import pyplot, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # devcluster is the repository's, not an installed package

from devcluster.oci import attach_spec, push_index  # noqa: E402
from devcluster.registries import Registry, start_oci_registry  # noqa: E402
from extender.artifacts.registry_source import RegistrySource  # noqa: E402
from extender.artifacts.types import PullContext, SpecKey  # noqa: E402
from extender.registry.client import RegistryClient  # noqa: E402
from extender.registry.hosts import HostPolicy, RegistryHostConfig  # noqa: E402
from extender.server.config import Settings  # noqa: E402

SPEC = (ROOT / "examples" / "specs" / "multi-variant.yaml").read_text()
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CTX = PullContext("default")
PLATFORMS = ("linux/amd64", "linux/arm64")


def make_source(registry: Registry) -> RegistrySource:
    client = RegistryClient(
        policy=HostPolicy(allow_loopback=True),
        hosts={registry.host: RegistryHostConfig(plain_http=True)},
    )
    return RegistrySource(client, Settings().artifact_cache_config())


def prepare(registry: Registry, images: int) -> list[str]:
    mode = "v1.1-referrers-api" if registry.referrers_api else "v1.1-referrers-tag"
    refs = []
    for i in range(images):
        repo = f"bench/app{i}"
        image = push_index(registry, repo, "v1")
        attach_spec(registry, repo, image.digest, SPEC, created=T0, distribution_spec=mode)
        refs.append(image.tag_ref)
    return refs


async def measure(registry: Registry, refs: list[str], pods: int) -> dict[str, Any]:
    cold, warm, hot, requests = [], [], [], []
    for ref in refs:
        source = make_source(registry)
        key = SpecKey(ref, platform="linux/amd64")
        async with source.client:
            start = time.perf_counter()
            lookup = await source.load(key, CTX)
            cold.append(time.perf_counter() - start)
            assert lookup.spec is not None, lookup
            requests.append(source.client.requests)
            start = time.perf_counter()
            await source.load(key, CTX)
            warm.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(1000):
                source.get_cached(key, CTX)
            hot.append((time.perf_counter() - start) / 1000)

    # A run: pods arrive (prefetch both platforms), then filter reads both platforms.
    source = make_source(registry)
    async with source.client:
        for i in range(pods):
            ref = refs[i % len(refs)]
            await asyncio.gather(*(source.load(SpecKey(ref, platform=p), CTX) for p in PLATFORMS))
            for platform in PLATFORMS:
                assert source.get_cached(SpecKey(ref, platform=platform), CTX) is not None
        run_requests = source.client.requests
    caches = {
        name: {"hits": c.hits, "misses": c.misses, "hit_ratio": round(c.ratio, 3)}
        for name, c in source.stats.caches().items()
        if c.hits or c.misses
    }
    return {
        "registry": "referrers API" if registry.referrers_api else "tag schema",
        "cold_load_ms_median": round(statistics.median(cold) * 1000, 2),
        "warm_load_us_median": round(statistics.median(warm) * 1e6, 1),
        "get_cached_us_median": round(statistics.median(hot) * 1e6, 2),
        "requests_per_cold_load": sorted(set(requests)),
        "run": {
            "pods": pods,
            "images": len(refs),
            "platforms": len(PLATFORMS),
            "registry_requests": run_requests,
            "loads": source.stats.loads,
            "caches": caches,
        },
    }


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'registry':<14} {'cold ms':>8} {'warm us':>8} {'get_cached us':>14}"
        f" {'requests/cold':>14} {'run requests':>13} {'run loads':>10}"
    ]
    for r in results:
        requests = ",".join(str(n) for n in r["requests_per_cold_load"])
        lines.append(
            f"{r['registry']:<14} {r['cold_load_ms_median']:>8.2f} {r['warm_load_us_median']:>8.1f}"
            f" {r['get_cached_us_median']:>14.2f} {requests:>14}"
            f" {r['run']['registry_requests']:>13} {r['run']['loads']:>10}"
        )
    run = results[0]["run"]
    lines.append(
        f"(medians over {run['images']} images; a run is {run['pods']} pods over those images,"
        f" {run['platforms']} platforms each)"
    )
    return "\n".join(lines)


def plot(results: Sequence[dict[str, Any]], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    steps = (
        ("cold load", "cold_load_ms_median", 1000.0),
        ("warm load", "warm_load_us_median", 1.0),
        ("get_cached (filter path)", "get_cached_us_median", 1.0),
    )
    figure, axis = plt.subplots(figsize=(8, 3.8))
    height = 0.8 / len(results)
    for index, r in enumerate(results):
        values = [r[key] * scale for _, key, scale in steps]
        positions = [p + index * height for p in range(len(steps))]
        axis.barh(positions, values, height, label=r["registry"])
        for position, value in zip(positions, values, strict=True):
            axis.annotate(f"{value:,.1f} µs", (value, position), xytext=(3, -3),
                          textcoords="offset points", fontsize=8)  # fmt: skip
    axis.set_yticks([p + height * (len(results) - 1) / 2 for p in range(len(steps))])
    axis.set_yticklabels([label for label, _, _ in steps])
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("µs per spec lookup (median over images; log scale)")
    axis.set_title("image-compat-extender artifact source: cold vs cached")
    axis.legend(loc="lower right", frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="artifacts-bench-") as tmp:
        for referrers in (True, False):
            with start_oci_registry(Path(tmp) / str(referrers), referrers=referrers) as registry:
                refs = prepare(registry, args.images)
                results.append(asyncio.run(measure(registry, refs, args.pods)))
    print(f"Python {platform.python_version()}, loopback registries (go-containerregistry)\n")
    print(table(results))
    document = {"benchmark": "artifacts", "python": platform.python_version(), "results": results}
    write_results(args.out, "artifacts", document, lambda path: plot(results, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
