"""Smoke test of the benchmark (benchmarks/run.py --quick): both triggers side by side, against the emulator
over https, in separate client processes. It takes about 40 s and runs in the normal suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_quick_benchmark_runs_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DBT_CLOUD"))}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=140,
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
