"""Run the emulator as a process: ``python -m airflow_dbt_cloud_dlt.testing --port 8765 [--tls] ...``.

Prints ``dbt Cloud emulator listening on URL (account A, jobs: ...)`` and, with ``--tls``, a second line
``CA certificate: PATH`` (``--cert-dir DIR`` makes it ``DIR/ca.pem``), then serves until SIGTERM/SIGINT.
The token comes from ``--token``, else ``$DBT_CLOUD_EMULATOR_TOKEN`` (which ``ps`` does not show), else
``emulator-token``. A bind address other than loopback is warned about on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from types import FrameType

from airflow_dbt_cloud_dlt.testing.emulator import DbtCloudEmulator, bind_warning
from airflow_dbt_cloud_dlt.testing.scripts import OUTCOME_HELP, default_demo_job, parse_job_spec

#: The environment variable that holds the token (it does not show in ``ps`` as ``--token`` does).
TOKEN_ENV = "DBT_CLOUD_EMULATOR_TOKEN"
DEFAULT_TOKEN = "emulator-token"


def _outcomes() -> str:
    lines = [f"  {name:<10} {text}" for name, text in OUTCOME_HELP.items()]
    return "job outcomes (OUTCOME in --job):\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_dbt_cloud_dlt.testing",
        description=__doc__,
        epilog=_outcomes(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to bind, 0 lets the OS pick a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--tls", action="store_true", help="serve https with a generated certificate (default: plain http)"
    )
    parser.add_argument(
        "--cert-dir", help="where to write ca.pem/server.pem/server-key.pem (default: a temporary directory)"
    )
    parser.add_argument(
        "--cert-hostname",
        action="append",
        default=[],
        help="another name for the certificate, repeatable (default: localhost and 127.0.0.1 only)",
    )
    parser.add_argument("--account", type=int, default=1, help="the account id (default: %(default)s)")
    parser.add_argument(
        "--token",
        help=f"the API token it accepts; visible in ps, so prefer the {TOKEN_ENV} environment variable "
        f"(default: ${TOKEN_ENV}, else {DEFAULT_TOKEN!r})",
    )
    parser.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="JOB_ID[:OUTCOME[:RUN_SECONDS]]",
        help=f"add a job, repeatable; OUTCOME is one of {', '.join(OUTCOME_HELP)} (success when left out), "
        "RUN_SECONDS is 1 when left out (default: a demo job 1 'daily build' that succeeds in about 3 s)",
    )
    args = parser.parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN
    warning = bind_warning(args.host)
    if warning:
        well_known = (
            f" It accepts the well-known token {DEFAULT_TOKEN!r}: set {TOKEN_ENV}." if token == DEFAULT_TOKEN else ""
        )
        print(f"WARNING: {warning}{well_known}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said above, on stderr
        emulator = DbtCloudEmulator(
            tls=args.tls,
            host=args.host,
            port=args.port,
            accounts={args.account: token},
            cert_dir=args.cert_dir,
            cert_hostnames=args.cert_hostname,
        )
    jobs = [parse_job_spec(spec, args.account) for spec in args.job] or [default_demo_job()]
    for job in jobs:
        job.account_id = args.account
        emulator.add_job(job)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emulator:
        job_ids = ", ".join(str(job.job_id) for job in jobs)
        print(f"dbt Cloud emulator listening on {emulator.base_url} (account {args.account}, jobs: {job_ids})")
        if emulator.ca_cert_path:
            print(f"CA certificate: {emulator.ca_cert_path}")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
