"""Smoke test of the benchmark (benchmarks/run.py --quick): both triggers side by side, against the emulator
over https, in separate client processes. It takes about 80 s and runs in the normal suite. The other tests
check the report's rendering and the runner's options without running anything."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import pytest
from conftest import AIRFLOW_2

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
@pytest.mark.skipif(AIRFLOW_2, reason="`make bench` runs on Airflow 3: one smoke run, on that leg of `make test`")
def test_quick_benchmark_runs_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DBT_CLOUD"))}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = out.read_text()
    assert "## N = 20 concurrent triggers" in report
    assert "| API requests seen by the emulator |" in report
    assert "## Targets" in report and "## Largest number of concurrent runs" in report

    data = json.loads(out.with_suffix(".json").read_text())
    results = {(r["side"], bool(r["fault_rate"])): r for r in data["results"]}
    ours, official = results[("ours", False)], results[("official", False)]
    for result in (ours, official):  # without faults both sides report every run with its real final status
        assert result["n"] == 20 and result["events"] == 20
        assert result["missing"] == 0 and result["wrong"] == 0, result["wrong_examples"]
        assert result["delay_median"] is not None and result["delay_median"] >= 0
    assert ours["requests"] < official["requests"]
    assert ours["requests_by_route"].keys() == {"GET /api/v2/accounts/{account}/runs/"}  # batched reads only

    # Fault scenario (--quick: 20 % of the GETs fail): ours still never reports a wrong status.
    faulty_ours, faulty_official = results[("ours", True)], results[("official", True)]
    assert faulty_official["faults_injected"]
    assert faulty_ours["events"] == 20 and faulty_ours["wrong"] == 0 and faulty_ours["missing"] == 0

    # The official-named operator and sensor (ours' triggers come from them); import cost; a streamed artifact.
    assert "## Importing the operators module, beyond Airflow's own import" in report
    assert "## Downloading a 20 MB artifact (`DbtCloudGetJobRunArtifactOperator`)" in report
    artifact = data["extra"]["artifact"]
    assert artifact["ours"]["size"] == artifact["official"]["size"] == 20_000_000
    assert artifact["ours"]["added_mb"] < artifact["official"]["added_mb"]


@pytest.fixture
def bench_runner(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/run.py`` imported as a module (its ``bench`` package beside it on the path)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmarks_run", REPO / "benchmarks" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_report_is_what_the_renderer_makes_of_its_json(
    bench_runner: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RESULTS.md and RESULTS.json come from one run: rendering the JSON again gives the same tables."""
    report = importlib.import_module("bench.report")
    data = json.loads((REPO / "benchmarks" / "RESULTS.json").read_text())
    monkeypatch.setattr(report, "machine", lambda: data["machine"])
    expected = (REPO / "benchmarks" / "RESULTS.md").read_text()
    date = re.search(r"^- Date: (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", expected, re.MULTILINE)
    assert date
    started = datetime.strptime(date[1], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc).timestamp()
    args = argparse.Namespace(**data["args"])
    rendered = report.render(data["results"], data["scale_check"], args, started, data["elapsed"], data.get("extra"))
    assert rendered == expected


def test_only_runs_known_scenarios_and_keeps_the_committed_results(bench_runner: ModuleType) -> None:
    args = bench_runner.parse_args(["--only", "waiting,scale", "--quick"])
    assert args.only == ["waiting", "scale"]
    assert Path(args.out) == bench_runner.ONLY_OUT  # a partial run never overwrites benchmarks/RESULTS.md
    assert bench_runner.parse_args([]).out == "benchmarks/RESULTS.md"
    with pytest.raises(SystemExit):
        bench_runner.parse_args(["--only", "import_time"])
