"""Smoke test of ``bench.cluster``: the report's shape on one short stream, real processes.

Timings on a shared machine prove nothing; what Redis carried per audio second does (see
the bound below).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cluster import main, with_shared_cores
from tests.data import FIXTURE_DIR
from tests.redis_server import require_redis_server


def test_bad_cluster_shape_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--cluster", "two,workers"])
    assert exited.value.code == 2


def test_workers_on_one_machine_split_its_cores() -> None:
    assert with_shared_cores([], 2, cores=2) == ["--cpu-threads", "1"]
    assert with_shared_cores(["--device", "cpu"], 3, cores=16) == [
        "--device", "cpu", "--cpu-threads", "5"]
    assert with_shared_cores([], 4, cores=2) == ["--cpu-threads", "1"]
    assert with_shared_cores(["--cpu-threads", "2"], 2, cores=2) == ["--cpu-threads", "2"]
    assert with_shared_cores(["--cpu-threads=2"], 2, cores=2) == ["--cpu-threads=2"]


@pytest.mark.slow
@pytest.mark.model
def test_cluster_bench_reports_redis_cost(tmp_path: Path) -> None:
    require_redis_server()
    out = tmp_path / "cluster.json"
    code = main(["--cluster", "1,1", "--sweep", "1", "--duration", "6", "--ids", "jfk",
                 "--manifest", str(FIXTURE_DIR / "manifest.jsonl"),
                 "--worker-args", "--cpu-threads 1", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert (report["gateways"], report["workers"]) == (1, 1)
    (point,) = report["points"]
    assert point["admitted"] == 1 and point["refused"] == 0
    assert point["decodes"] > 0 and point["round_trips_per_decode"] == pytest.approx(1.0)
    # Partials upload only their new samples (int16 is 32 kB/s); a final that reaches back
    # for acoustic context across the silence before its utterance is uploaded whole (a job
    # names one range), so one short clip with two finals costs about three times the audio.
    assert 16_000 <= point["redis_in_bytes_per_audio_s"] < 4 * 32_000
    assert point["wer"] is not None and point["wer"] < 0.2
