"""Download one artifact with one side's ``DbtCloudGetJobRunArtifactOperator`` and report the memory it took.

Started by ``bench/scenarios/artifact.py`` in a fresh process with the side's connection (as ``client.py``).
Prints one JSON line: the peak RSS before the download (imports, hook, one small request) and after it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from bench.config import ACCOUNT, CONN_ID


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=("ours", "official"), required=True)
    parser.add_argument("--run-id", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.side == "ours":
        from airflow_dbt_cloud_dlt.hooks import DbtCloudHook
        from airflow_dbt_cloud_dlt.operators import DbtCloudGetJobRunArtifactOperator
    else:
        from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook  # type: ignore[no-redef]
        from airflow.providers.dbt.cloud.operators.dbt import (  # type: ignore[no-redef]
            DbtCloudGetJobRunArtifactOperator,
        )
    DbtCloudHook(CONN_ID).get_job_run(args.run_id, account_id=ACCOUNT)  # warm: connection, TLS, imports
    operator = DbtCloudGetJobRunArtifactOperator(
        task_id="download",
        dbt_cloud_conn_id=CONN_ID,
        run_id=args.run_id,
        path=args.path,
        account_id=ACCOUNT,
        output_file_name=args.out,
    )
    before, started = max_rss_mb(), time.monotonic()
    operator.execute({})  # type: ignore[arg-type]
    seconds, after = time.monotonic() - started, max_rss_mb()
    size = Path(args.out).stat().st_size
    print(
        json.dumps({"side": args.side, "rss_before_mb": before, "rss_peak_mb": after, "seconds": seconds, "size": size})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
