"""Airflow DAG: the custval nightly job, once per logical date.

- `--as-of` is the DAG run's logical date (`ds`): a re-run or a backfill for a
  date replaces that date's partitions, so retries and backfills are safe.
- Exit codes (see the README): 1 = the run failed (storage, engine): retried;
  2 = invalid job, arguments or input schema, 3 = a data-quality gate failed:
  failed at once without retries, since running again cannot help. custval
  never exits 99, which Airflow would read as "skipped".
- Credentials reach custval through the worker's environment (AWS_*,
  GOOGLE_*, AZURE_*), never through the command line.

Set the Airflow Variables `custval_bin`, `custval_job`, `custval_input` and
`custval_output` (or edit the defaults below).
"""
from __future__ import annotations

import subprocess
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.models import Variable
from airflow.operators.python import PythonOperator

NOT_RETRYABLE = {2: "invalid job, arguments or input schema", 3: "a data-quality gate failed"}


def run_custval(ds: str, **_context) -> None:
    cmd = [
        Variable.get("custval_bin", default_var="custval"),
        "run",
        Variable.get("custval_job", default_var="/opt/custval/jobs/nightly.toml"),
        "--as-of",
        ds,
        "--input",
        "transactions=" + Variable.get("custval_input", default_var="s3://warehouse/exports/transactions/"),
        "--output",
        Variable.get("custval_output", default_var="s3://warehouse/custval/"),
        "--report",
        f"/tmp/custval-report-{ds}.json",
        "--log-format",
        "json",
    ]
    code = subprocess.run(cmd, check=False).returncode
    if code == 0:
        return
    if code in NOT_RETRYABLE:
        raise AirflowFailException(f"custval exited {code}: {NOT_RETRYABLE[code]}; nothing was published")
    raise AirflowException(f"custval exited {code}: the run failed and published nothing; retrying")


with DAG(
    dag_id="custval_nightly",
    description="Customer tiers, CLV, retention and concentration",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=10), "retry_exponential_backoff": True},
    tags=["custval"],
) as dag:
    PythonOperator(task_id="custval_run", python_callable=run_custval)
