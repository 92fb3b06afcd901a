"""Loads jobs/airflow/custval_nightly.py in a real Airflow and checks it.

Run by tests/integration/airflow.rs with the Python of the Airflow that
scripts/test installs (tests/airflow/requirements.txt). Prints one line per
check and `N passed, 0 failed`; exits 1 at the first failed check.

Checks, each against an expected value written here from the DAG's contract
(the README's "Airflow" section), not from the DAG's own code:
- DagBag imports the file with no import errors and no warnings (a name
  Airflow 3 deprecates warns), and finds the DAG with its one task, its
  DAG class from airflow.sdk under Airflow 3 and from the 2.x fallback
  under Airflow 2 (the module DagBag imported the file as);
- the schedule is an explicit CronDataIntervalTimetable, and the run after
  2024-03-02 00:00 UTC has the data interval 2024-03-01..2024-03-02;
- rendering the task's templated fields with that run's context gives
  `--as-of 2024-03-01` (the last complete day of the interval), and the
  same for a manual run triggered on 2024-03-02 at 10:30 UTC;
- execution_timeout is set, retries > 0;
- exit code 0 succeeds, 1 raises a retryable AirflowException, 2 and 3
  raise AirflowFailException (no retry), run through a real subprocess.
"""
from __future__ import annotations

import os
import stat
import sys
import tempfile

DAG_FILE = sys.argv[1]
passed = 0


def check(what: str, ok: bool, detail: object = "") -> None:
    global passed
    if not ok:
        print(f"FAILED: {what}: {detail}")
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"ok: {what}")


import airflow  # noqa: E402
import pendulum  # noqa: E402
from airflow.exceptions import AirflowException, AirflowFailException  # noqa: E402
from airflow.models.dagbag import DagBag  # noqa: E402

print(f"airflow {airflow.__version__}")

bag = DagBag(dag_folder=DAG_FILE, include_examples=False)
check("DagBag import errors", bag.import_errors == {}, bag.import_errors)
# DagBag records the warnings raised while importing each file (Airflow
# 2.9+), e.g. a name Airflow 3 deprecates.
captured = getattr(bag, "captured_warnings", {})
check("no warnings importing the DAG (deprecated names)", captured == {}, captured)
check("DAG custval_nightly found", "custval_nightly" in bag.dags, list(bag.dags))
dag = bag.dags["custval_nightly"]
task = dag.get_task("custval_run")
check("one task", [t.task_id for t in dag.tasks] == ["custval_run"], [t.task_id for t in dag.tasks])

from airflow.timetables.interval import CronDataIntervalTimetable  # noqa: E402

# Airflow 3 takes the Airflow 3 paths; Airflow 2 the fallback.
module = next(
    mod
    for mod in list(sys.modules.values())
    if getattr(mod, "__file__", None) and os.path.abspath(mod.__file__) == os.path.abspath(DAG_FILE)
)
major = int(airflow.__version__.split(".")[0])
want = "airflow.sdk" if major >= 3 else "airflow.models.dag"
check(f"Airflow {major} DAG class from {want}", module.DAG.__module__.startswith(want), module.DAG.__module__)
check("explicit CronDataIntervalTimetable", isinstance(dag.timetable, CronDataIntervalTimetable), dag.timetable)
check("execution_timeout set", task.execution_timeout is not None and task.execution_timeout.total_seconds() > 0, task.execution_timeout)
check("retries > 0", task.retries > 0, task.retries)


def render_as_of(interval_start, interval_end) -> str:
    """Render the task's op_kwargs as Airflow would for a run with this
    interval (the logical date being its start, as in both timetables)."""
    try:
        from airflow.sdk.execution_time import macros  # Airflow 3
    except ImportError:
        from airflow import macros  # Airflow 2
    context = {
        "data_interval_start": interval_start,
        "data_interval_end": interval_end,
        "logical_date": interval_start,
        "ds": interval_start.strftime("%Y-%m-%d"),
        "macros": macros,
        "dag": dag,
        "task": task,
    }
    env = dag.get_template_env()
    rendered = task.render_template(task.op_kwargs, context, jinja_env=env)
    return rendered["as_of"]


# The scheduled run for the day 2024-03-01: its interval as Airflow computes it.
from airflow.timetables.base import DataInterval, TimeRestriction  # noqa: E402

last = DataInterval(pendulum.datetime(2024, 2, 29, tz="UTC"), pendulum.datetime(2024, 3, 1, tz="UTC"))
info = dag.timetable.next_dagrun_info(
    last_automated_data_interval=last,
    restriction=TimeRestriction(earliest=pendulum.datetime(2024, 1, 1, tz="UTC"), latest=None, catchup=True),
)
interval = info.data_interval
check(
    "scheduled interval 2024-03-01..2024-03-02",
    (interval.start.isoformat(), interval.end.isoformat()) == ("2024-03-01T00:00:00+00:00", "2024-03-02T00:00:00+00:00"),
    interval,
)
as_of = render_as_of(interval.start, interval.end)
check("scheduled run renders --as-of 2024-03-01", as_of == "2024-03-01", as_of)

# A manual trigger at 2024-03-02 10:30 covers the last complete interval.
manual = dag.timetable.infer_manual_data_interval(run_after=pendulum.datetime(2024, 3, 2, 10, 30, tz="UTC"))
as_of = render_as_of(manual.start, manual.end)
check("manual run at 2024-03-02 10:30 renders --as-of 2024-03-01", as_of == "2024-03-01", (manual, as_of))

# Under Airflow 3's default CronTriggerTimetable a run has no interval: start,
# end and logical date are all the trigger time. The template must still give
# the day before, where `{{ ds }}` would give the day that just started.
trigger = pendulum.datetime(2024, 3, 2, tz="UTC")
as_of = render_as_of(trigger, trigger)
check("a CronTriggerTimetable-style run at 2024-03-02 renders --as-of 2024-03-01", as_of == "2024-03-01", as_of)

# The rendered date reaches the command line after --as-of.

settings = {"custval_bin": "custval", "custval_job": "job.toml", "custval_input": "in/", "custval_output": "out/"}
cmd = module.build_command("2024-03-01", settings)
i = cmd.index("--as-of")
check("command has --as-of 2024-03-01", cmd[i + 1] == "2024-03-01" and cmd[:3] == ["custval", "run", "job.toml"], cmd)

# Exit codes through a real subprocess: a script exiting with the code.
with tempfile.TemporaryDirectory() as tmp:
    for code, expected in [(0, None), (1, "retry"), (2, "fail"), (3, "fail"), (137, "retry")]:
        script = os.path.join(tmp, f"exit{code}")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\nexit {code}\n")
        os.chmod(script, os.stat(script).st_mode | stat.S_IEXEC)
        try:
            module.run_command([script])
            got = None
        except AirflowFailException:
            got = "fail"
        except AirflowException:
            got = "retry"
        check(f"exit {code} -> {expected or 'success'}", got == expected, got)

print(f"{passed} passed, 0 failed")
