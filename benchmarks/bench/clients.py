"""Client processes (``benchmarks/client.py``): their environment, start-up, hand-over and figures."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import ACCOUNT, CLIENT_SCRIPT, CONN_ID, REPO, SIDES, TOKEN
from .emulator import Emulator
from .measure import machine_cpu_seconds


def connection_json(side: str, emulator: Emulator) -> str:
    """The side's Airflow connection to the emulator, as an ``AIRFLOW_CONN_*`` value."""
    conn: dict[str, Any] = {"host": emulator.base_url, "login": str(ACCOUNT), "password": TOKEN}
    if side == "ours":
        conn = {"conn_type": "dbt_cloud_dlt", **conn, "extra": {"verify": emulator.ca_cert}}
    else:  # the official hook always builds https://{host}/ and trusts SSL_CERT_FILE / REQUESTS_CA_BUNDLE
        conn = {"conn_type": "dbt_cloud", **conn, "host": emulator.host}
    return json.dumps(conn)


def client_env(side: str, emulator: Emulator, home: Path, pycache: Path) -> dict[str, str]:
    """A fresh Airflow home, the connection and the emulator's CA; no AIRFLOW_* or DBT_CLOUD* from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_CLOUD", "AIRFLOW"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        SSL_CERT_FILE=emulator.ca_cert,
        REQUESTS_CA_BUNDLE=emulator.ca_cert,
        CURL_CA_BUNDLE=emulator.ca_cert,
        PYTHONUNBUFFERED="1",
        # Compiled modules go to a cache in the work dir, filled by a priming run of each side before the
        # scenarios: like an installed Airflow, and nothing is written into the source tree or the venv.
        PYTHONPYCACHEPREFIX=str(pycache),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = connection_json(side, emulator)
    return env


def prime(emulator: Emulator, workdir: Path) -> None:
    """Run each side's client once up to its warm-up, to fill the bytecode cache that every client shares."""
    for side in SIDES:
        home = workdir / f"prime_{side}"
        home.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(CLIENT_SCRIPT), "--side", side, "--prime"]
        cmd += ["--run-ids", "-", "--ready", "-", "--result", "-"]
        env = client_env(side, emulator, home, workdir / "pycache")
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"priming the {side} client failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


class Client:
    """One client process: started first (it imports Airflow like a triggerer that is already up), then
    handed the run ids once the runs exist."""

    def __init__(self, emulator: Emulator, side: str, label: str, args: argparse.Namespace, workdir: Path) -> None:
        self.label, self.emulator = label, emulator
        self.dir = workdir / label.replace(" ", "_").replace("=", "").replace("%", "pct").replace(",", "")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ids_file, self.result_file, ready = (self.dir / f for f in ("run_ids.json", "client.json", "ready"))
        home = self.dir / "airflow_home"
        home.mkdir(exist_ok=True)
        cmd = [sys.executable, str(CLIENT_SCRIPT), "--side", side, "--run-ids", str(self.ids_file)]
        cmd += ["--ready", str(ready), "--result", str(self.result_file), "--poll", str(args.poll)]
        cmd += ["--trigger-timeout", str(args.trigger_timeout)]
        if args.profile:
            cmd += ["--profile-out", str(self.dir / "client.prof")]
        self.log = open(self.dir / "client.log", "w")  # noqa: SIM115  (closed in wait())
        env = client_env(side, emulator, home, workdir / "pycache")
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        while not ready.exists():
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"{label}: the client exited before it was ready:\n{self.tail()}")
            time.sleep(0.01)

    def tail(self) -> str:
        return (self.dir / "client.log").read_text()[-3000:]

    def go(self, run_ids: list[int]) -> None:
        """Hand over the run ids (atomically): the client builds its triggers at once."""
        tmp = self.ids_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(run_ids))
        self.server_cpu0, self.wall0 = self.emulator.cpu_seconds(), time.monotonic()
        self.machine_cpu0, self.driver_cpu0 = machine_cpu_seconds(), time.process_time()
        tmp.rename(self.ids_file)

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the client to exit; return its JSON figures. Sets the driver-side figures as attributes."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        self.wall = time.monotonic() - self.wall0
        self.server_cpu = self.emulator.cpu_seconds() - self.server_cpu0
        self.machine_cpu = machine_cpu_seconds() - self.machine_cpu0
        self.driver_cpu = time.process_time() - self.driver_cpu0
        if self.proc.returncode != 0 or not self.result_file.exists():
            raise RuntimeError(f"{self.label}: the client failed (exit {self.proc.returncode}):\n{self.tail()}")
        return dict(json.loads(self.result_file.read_text()))
