"""Constants shared by the driver and the client processes (standard library only: clients import it)."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO = BENCH_DIR.parent
CLIENT_SCRIPT = BENCH_DIR / "client.py"
ACCOUNT = 1
TOKEN = "dbtc_bench-token-7Hq2"
CONN_ID = "bench_dbt_cloud"
SUCCESS_JOB, ERROR_JOB = 101, 102
ERROR_EVERY = 5  # every 5th run belongs to the failing job: 20 %
EXPECTED_EVENT = {10: "success", 20: "error", 30: "cancelled"}
ACCOUNT_LIMIT_PER_MINUTE = 5000  # dbt Cloud's documented per-account limit
OUR_DEFAULT_SHARE = 0.5  # airflow_dbt_cloud_dlt.api.ratelimit.DEFAULT_SHARE
REFERENCE_POLL = 5.0  # the max-concurrency figures are computed for a 5 s poll, whatever --poll is
FAULT_KINDS = ["500", "502", "503", "429", "reset"]
FAULT_SEED = 20260101
SIDES = ("ours", "official")
