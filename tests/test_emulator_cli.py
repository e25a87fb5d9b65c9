"""The emulator's command line: ``--help`` documents every option's default and the outcomes a job can have."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from airflow_dbt_cloud_dlt.testing.scripts import OUTCOME_STATUS

OPTIONS = ("--host", "--port", "--tls", "--cert-dir", "--cert-hostname", "--account", "--token", "--job")


def _help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_dbt_cloud_dlt.testing", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return done.stdout


def _entries(text: str) -> dict[str, str]:
    """Each option's help entry (its wrapped lines joined), keyed by the option's name."""
    section = text.split("options:", 1)[1].split("\n\n", 1)[0]
    entries: dict[str, str] = {}
    for line in filter(None, section.splitlines()):
        found = re.match(r"\s{2}(-[-\w]+)", line)
        if found:
            name = found.group(1)
            entries[name] = line
        else:
            entries[name] += " " + line.strip()
    return entries


def test_help_shows_every_default_and_the_outcomes() -> None:
    text = _help()
    entries = _entries(text)
    assert set(OPTIONS) <= set(entries), sorted(entries)
    for option in OPTIONS:
        assert "(default:" in entries[option], entries[option]
    assert "(default: 8765)" in entries["--port"] and "(default: 127.0.0.1)" in entries["--host"]
    assert "(default: 1)" in entries["--account"]
    for outcome in OUTCOME_STATUS:  # named in the --job option and explained below the options
        assert outcome in entries["--job"]
        assert re.search(rf"^\s+{outcome}\s+status \d+", text, re.MULTILINE), outcome
