"""The capacity bench end to end on one short stream, and its arithmetic."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.capacity import PointResult, capacity, main
from bench.harness.server import Sample, cpu_between
from bench.metrics import LatencyStats, WerResult
from tests.data import FIXTURE_DIR


def test_cpu_between_interpolates_samples() -> None:
    samples = [Sample(0.0, 0.0, 0), Sample(1.0, 0.5, 0), Sample(2.0, 1.5, 0)]
    assert cpu_between(samples, 0.0, 2.0) == pytest.approx(75.0)
    assert cpu_between(samples, 0.5, 1.5) == pytest.approx(75.0)
    assert cpu_between(samples, 1.0, 2.0) == pytest.approx(100.0)


def point(n: int, p95: float, wer: float, refused: int = 0) -> PointResult:
    latency = LatencyStats(median=p95 / 2, p95=p95, mean=p95 / 2, n=10)
    return PointResult(
        sessions=n, admitted=n - refused, refused=refused, failed=0, audio_seconds=60.0,
        final_latency=latency, first_text_latency=latency,
        wer=WerResult(wer, 0, 0, 0, 100), dropped_partials=0, server_refused=refused,
        session_cost=None, server_idle_cpu_pct=0.0, server_cpu_pct=0.0,
        server_cpu_pct_per_session=0.0, server_rss_mb=0.0, server_rss_mb_per_session=0.0,
        client_cpu_pct=0.0, partials_per_s=0.0, streams=(), server_log=(),
    )


def test_capacity_is_the_largest_n_within_latency_and_wer_of_one_stream() -> None:
    one = point(1, 0.6, 0.050)
    assert capacity([one, point(4, 1.2, 0.059), point(6, 1.6, 0.055)]) == 4
    assert capacity([one, point(4, 1.2, 0.061)]) == 1  # WER more than a point worse
    assert capacity([one, point(4, 1.2, 0.05, refused=1)]) == 1  # not all were served
    assert capacity([replace(one, final_latency=None)]) == 0


@pytest.mark.model
@pytest.mark.slow
def test_one_short_stream_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    assert main(["--sweep", "1", "--duration", "2", "--ids", "1089-134691-0000",
                 "--manifest", str(FIXTURE_DIR / "manifest.jsonl"),
                 "--warmup", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    [result] = report["points"]
    assert result["admitted"] == 1 and result["refused"] == 0
    assert result["final_latency"]["n"] >= 1
    assert result["wer"]["wer"] < 0.3
    assert result["server_cpu_pct"] > 0 and result["server_rss_mb"] > 50
    assert result["session_cost"] is not None
