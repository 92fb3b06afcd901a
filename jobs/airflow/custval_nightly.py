"""Airflow DAG: the custval nightly job, once per day of data.

- `--as-of` is the last complete day of the run's data interval: the data
  interval end minus one day. The schedule is an explicit
  `CronDataIntervalTimetable` (daily at 00:00 UTC), so Airflow 2 and
  Airflow 3 give the same interval: the run for the interval
  2024-03-01..2024-03-02 starts after midnight and computes
  `--as-of 2024-03-01`, never "as of today" with today's partial data (what
  `{{ ds }}` gives under Airflow 3's default `CronTriggerTimetable`). A
  re-run or a backfill of a date replaces that date's partitions, so
  retries and backfills are safe.
- Exit codes (see the README): 1 = the run failed (storage, engine): retried;
  2 = invalid job, arguments or input schema, 3 = a data-quality gate failed:
  failed at once without retries, since running again cannot help. custval
  never exits 99, which Airflow would read as "skipped".
- `execution_timeout` stops a run that hangs (a stuck store) so that it is
  retried; custval publishes nothing from a run that is killed.
- custval logs one line per step (rows, seconds) and a run summary at its
  default level, so the task log shows what happened.
- Credentials reach custval through the worker's environment (AWS_*,
  GOOGLE_*, AZURE_*), never through the command line.

Airflow 3 import paths (`airflow.sdk`, the standard provider), with a
fallback to Airflow 2.x's. Set the Airflow Variables `custval_bin`,
`custval_job`, `custval_input` and `custval_output` (or edit the defaults
below).
"""
from __future__ import annotations

import subprocess
from datetime import timedelta

import pendulum
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Variable

    def _variable(key: str, default: str) -> str:
        return Variable.get(key, default=default)

except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.models import Variable
    from airflow.operators.python import PythonOperator

    def _variable(key: str, default: str) -> str:
        return Variable.get(key, default_var=default)


# The last complete day of the data interval, rendered by Airflow per run.
AS_OF = "{{ (data_interval_end - macros.timedelta(days=1)).strftime('%Y-%m-%d') }}"

NOT_RETRYABLE = {2: "invalid job, arguments or input schema", 3: "a data-quality gate failed"}

DEFAULTS = {
    "custval_bin": "custval",
    "custval_job": "/opt/custval/jobs/nightly.toml",
    "custval_input": "s3://warehouse/exports/transactions/",
    "custval_output": "s3://warehouse/custval/",
}


def build_command(as_of: str, settings: dict[str, str]) -> list[str]:
    """The custval command line for one as-of date (YYYY-MM-DD)."""
    return [
        settings["custval_bin"],
        "run",
        settings["custval_job"],
        "--as-of",
        as_of,
        "--input",
        "transactions=" + settings["custval_input"],
        "--output",
        settings["custval_output"],
        "--report",
        f"/tmp/custval-report-{as_of}.json",
        "--log-format",
        "json",
    ]


def run_command(cmd: list[str]) -> None:
    """Run custval; map its exit code onto Airflow's retry semantics."""
    code = subprocess.run(cmd, check=False).returncode
    if code == 0:
        return
    if code in NOT_RETRYABLE:
        raise AirflowFailException(f"custval exited {code}: {NOT_RETRYABLE[code]}; nothing was published")
    raise AirflowException(f"custval exited {code}: the run failed and published nothing; retrying")


def run_custval(as_of: str, **_context) -> None:
    """The task: read the Variables, run custval for `as_of`."""
    settings = {key: _variable(key, default) for key, default in DEFAULTS.items()}
    run_command(build_command(as_of, settings))


with DAG(
    dag_id="custval_nightly",
    description="Customer tiers, CLV, retention and concentration",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=10),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=4),
    },
    tags=["custval"],
) as dag:
    PythonOperator(task_id="custval_run", python_callable=run_custval, op_kwargs={"as_of": AS_OF})
