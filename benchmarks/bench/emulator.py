"""The emulator as a separate process (``python -m airflow_dbt_cloud_dlt.testing --tls``), driven over https."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from .config import ACCOUNT, ERROR_EVERY, ERROR_JOB, REPO, SUCCESS_JOB, TOKEN
from .measure import process_cpu_seconds


class Emulator:
    """One emulator process for the whole benchmark, with a throw-away CA and a certificate for 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.log_path = workdir / "emulator.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_dbt_cloud_dlt.testing",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--tls",
                "--cert-dir",
                str(workdir / "certs"),
                "--account",
                str(ACCOUNT),
                "--token",
                TOKEN,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + 30
        self.base_url = self.ca_cert = ""
        while time.monotonic() < deadline and not self.ca_cert:
            text = self.log_path.read_text()
            for line in text.splitlines():
                if line.startswith("dbt Cloud emulator listening on "):
                    self.base_url = line.split()[5]
                elif line.startswith("CA certificate: "):
                    self.ca_cert = line.split(": ", 1)[1].strip()
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited early:\n{text}")
            time.sleep(0.1)
        if not self.ca_cert:
            self.stop()
            raise RuntimeError(f"the emulator did not start:\n{self.log_path.read_text()}")
        self.host = self.base_url.split("://", 1)[1]  # 127.0.0.1:PORT, the official connection's "tenant"
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """One keep-alive ``requests.Session`` per driver thread."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE would replace ``verify``
            session.verify = self.ca_cert
            session.headers["Authorization"] = f"Token {TOKEN}"
        return session

    def control(self, method: str, route: str, payload: Any = None) -> Any:
        response = self.session.request(method, f"{self.base_url}/_emulator/{route}", json=payload, timeout=120)
        response.raise_for_status()
        return response.json()

    def trigger(self, job_id: int) -> int:
        response = self.session.post(
            f"{self.base_url}/api/v2/accounts/{ACCOUNT}/jobs/{job_id}/run/", json={"cause": "benchmark"}, timeout=30
        )
        response.raise_for_status()
        return int(response.json()["data"]["id"])

    def trigger_nth(self, i: int) -> int:
        """Start run number ``i``: every ``ERROR_EVERY``-th run belongs to the failing job."""
        return self.trigger(ERROR_JOB if i % ERROR_EVERY == ERROR_EVERY - 1 else SUCCESS_JOB)

    def reset(self, run_seconds: float) -> None:
        """Forget everything; (re)define the two jobs, one that succeeds and one that fails."""
        self.control("POST", "reset/")
        for job_id, outcome in ((SUCCESS_JOB, "success"), (ERROR_JOB, "error")):
            job = {"job_id": job_id, "account_id": ACCOUNT, "name": f"bench {outcome}", "outcome": outcome}
            self.control("POST", "jobs/", {**job, "run_seconds": run_seconds, "serial": False})

    def runs(self) -> dict[int, dict[str, Any]]:
        """Every run with its real status and ``finished_at``."""
        return {int(run["id"]): run for run in self.control("GET", "runs/")}

    def cpu_seconds(self) -> float:
        """utime + stime of the emulator process."""
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
