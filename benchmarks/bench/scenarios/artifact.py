"""``artifact``: peak memory of downloading one big artifact (a 200 MB ``manifest.json``; 20 MB with --quick)
with each side's ``DbtCloudGetJobRunArtifactOperator``, each in a fresh client process.

The emulator generates the file while it sends it (``JobScript.artifact_sizes``), so it costs the emulator
no memory. The figure is the growth of the client's peak RSS over the download: the official reads the whole
answer, parses it and writes it again with ``json.dump``; ours streams it to disk in 1 MB chunks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from ..clients import client_env
from ..config import ACCOUNT, BENCH_DIR, REPO, SIDES
from ..context import Bench
from ..table import Target

ARTIFACT_JOB = 103
PATH = "manifest.json"
#: The target: the download adds less than this to the peak memory.
LIMIT_MB = 50.0


def run(bench: Bench) -> None:
    size = 20_000_000 if bench.args.quick else 200_000_000
    emulator = bench.emulator
    emulator.control("POST", "reset/")
    job = {"job_id": ARTIFACT_JOB, "account_id": ACCOUNT, "name": "bench artifact", "run_seconds": 0.0}
    files = {"artifact_sizes": {PATH: size}, "run_results": {"results": []}}  # a run with artifacts
    emulator.control("POST", "jobs/", {**job, **files, "serial": False})
    run_id = emulator.trigger(ARTIFACT_JOB)
    deadline = time.monotonic() + 30
    while emulator.runs()[run_id]["status"] != 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    figures: dict[str, Any] = {"size": size}
    for side in SIDES:
        home = bench.workdir / f"artifact_{side}"
        home.mkdir(parents=True, exist_ok=True)
        out = home / PATH
        cmd = [sys.executable, str(BENCH_DIR / "artifact_client.py"), "--side", side, "--run-id", str(run_id)]
        cmd += ["--path", PATH, "--out", str(out)]
        env = client_env(side, emulator, home, bench.workdir / "pycache")
        env["PYTHONPATH"] = str(BENCH_DIR)
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"artifact download ({side}) failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["added_mb"] = result["rss_peak_mb"] - result["rss_before_mb"]
        figures[side] = result
        out.unlink(missing_ok=True)
        print(
            f"[bench]   artifact {side:8} {size / 1e6:.0f} MB: peak RSS +{result['added_mb']:.0f} MB "
            f"({result['rss_before_mb']:.0f} → {result['rss_peak_mb']:.0f} MB) in {result['seconds']:.1f} s",
            flush=True,
        )
    bench.extra["artifact"] = figures


def targets(figures: dict[str, Any] | None) -> list[Target]:
    if not figures or "ours" not in figures:
        return []
    ours, official = figures["ours"], figures.get("official", {})
    detail = f"ours +{ours['added_mb']:.0f} MB, official +{official.get('added_mb', float('nan')):.0f} MB"
    name = f"downloading a {figures['size'] / 1e6:.0f} MB artifact adds < {LIMIT_MB:.0f} MB of peak memory"
    return [(name, ours["added_mb"] < LIMIT_MB and ours["size"] == figures["size"], detail)]


def render(figures: dict[str, Any] | None) -> list[str]:
    if not figures:
        return []
    lines = ["", f"## Downloading a {figures['size'] / 1e6:.0f} MB artifact (`DbtCloudGetJobRunArtifactOperator`)", ""]
    lines += ["| side | peak RSS before | peak RSS after | added | seconds |", "|---|---:|---:|---:|---:|"]
    for side in SIDES:
        if side in figures:
            f = figures[side]
            lines.append(
                f"| {side} | {f['rss_before_mb']:.0f} MB | {f['rss_peak_mb']:.0f} MB | {f['added_mb']:.0f} MB "
                f"| {f['seconds']:.1f} |"
            )
    return lines
