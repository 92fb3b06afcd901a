"""Benchmark driver for scripts/bench (issue 17's table): custval against
DuckDB, Polars and lifetimes on the generator's data and on data it did not
draw (no dropout), every section selectable with --only.

Every engine gets 2 threads, reads the same Parquet files and writes its
result to Parquet (so no engine can skip work); a measurement is the median
of its runs, the engines interleaved run by run; ratios are computed within
one run of this script, since the machine is noisy. Peak memory is the
child's max RSS (/usr/bin/time -f %M). Data sets are made once under --work
and kept (scripts/bench_data.py). A custval child that fails or runs past
--time-cap is reported in its row, never skipped.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["POLARS_MAX_THREADS"] = "2"

import duckdb  # noqa: E402
import polars as pl  # noqa: E402

import bench_data  # noqa: E402

THREADS = 2
REPO = Path(__file__).resolve().parent.parent

# The same four questions, in each engine's dialect. Days are integers
# (days since 1970-01-01), times in weeks, as in the nightly job.
CUSTVAL_SQL = {
    "scan": "SELECT sum(amount) AS s, max(order_ts) AS m, count(customer_id) AS n FROM t",
    "rfm": """
        WITH d AS (SELECT customer_id, CAST(CAST(order_ts AS INT) AS BIGINT) AS day, sum(amount) AS amount
                   FROM t GROUP BY customer_id, order_ts)
        SELECT customer_id, count(*) - 1 AS frequency,
               CAST(max(day) - min(day) AS DOUBLE) / 7 AS recency,
               CAST({asof} - min(day) AS DOUBLE) / 7 AS t,
               CASE WHEN count(*) > 1 THEN (sum(amount) - first_value(amount ORDER BY day)) / (count(*) - 1) ELSE 0 END AS monetary_value
        FROM d GROUP BY customer_id""",
    # Months as integers (year * 12 + month - 1, as sql/13 does): grouping
    # on an integer instead of date_trunc's timestamp. Same groups and counts
    # as DuckDB's and Polars' date_trunc; a third faster through custval sql
    # (1.15 s against 1.71 s, 400k no-dropout rows, debug build, median of 3).
    "cohorts": """
        WITH cm AS (SELECT customer_id, CAST(date_part('year', order_ts) * 12 + date_part('month', order_ts) - 1 AS INT) AS m
                    FROM t GROUP BY 1, 2),
             f AS (SELECT customer_id, m, min(m) OVER (PARTITION BY customer_id) AS cohort FROM cm)
        SELECT cohort, m, count(*) AS active FROM f GROUP BY cohort, m""",
    "pareto": """
        SELECT top_share(rev, 0.2) AS top20, gini(rev) AS gini
        FROM (SELECT customer_id, sum(amount) AS rev FROM t GROUP BY customer_id)""",
    "category_share": """
        WITH cc AS (SELECT customer_id, category, sum(amount) AS spend FROM t GROUP BY 1, 2)
        SELECT customer_id, category, spend,
               spend / sum(spend) OVER (PARTITION BY customer_id) AS share_of_customer,
               spend / sum(spend) OVER (PARTITION BY category) AS share_of_category
        FROM cc""",
}

DUCKDB_SQL = {
    "scan": CUSTVAL_SQL["scan"],
    "rfm": """
        WITH d AS (SELECT customer_id, CAST(epoch(order_ts) / 86400 AS BIGINT) AS day, sum(amount) AS amount
                   FROM t GROUP BY customer_id, order_ts)
        SELECT customer_id, count(*) - 1 AS frequency,
               (max(day) - min(day)) / 7.0 AS recency,
               ({asof} - min(day)) / 7.0 AS t,
               CASE WHEN count(*) > 1 THEN (sum(amount) - arg_min(amount, day)) / (count(*) - 1) ELSE 0 END AS monetary_value
        FROM d GROUP BY customer_id""",
    "cohorts": """
        WITH cm AS (SELECT customer_id, date_trunc('month', order_ts) AS m FROM t GROUP BY 1, 2),
             f AS (SELECT customer_id, m, min(m) OVER (PARTITION BY customer_id) AS cohort FROM cm)
        SELECT cohort, m, count(*) AS active FROM f GROUP BY cohort, m""",
    "pareto": """
        WITH r AS (SELECT customer_id, sum(amount) AS rev FROM t GROUP BY customer_id),
             o AS (SELECT rev, row_number() OVER (ORDER BY rev) AS i, count(*) OVER () AS n, sum(rev) OVER () AS tot FROM r)
        SELECT sum(rev) FILTER (WHERE i > n - ceil(0.2 * n)) / max(tot) AS top20,
               sum((2 * i - n - 1) * rev) / (max(n) * max(tot)) AS gini
        FROM o""",
    "category_share": CUSTVAL_SQL["category_share"],
}


def polars_query(name, src, asof):
    t = pl.scan_parquet(src)
    if name == "scan":
        return t.select(pl.col("amount").sum(), pl.col("order_ts").max(), pl.col("customer_id").count())
    if name == "rfm":
        d = (t.with_columns(pl.col("order_ts").cast(pl.Int32).cast(pl.Int64).alias("day"))
             .group_by("customer_id", "day").agg(pl.col("amount").sum()))
        return d.group_by("customer_id").agg(
            (pl.len() - 1).alias("frequency"),
            ((pl.col("day").max() - pl.col("day").min()) / 7).alias("recency"),
            ((asof - pl.col("day").min()) / 7).alias("t"),
            pl.when(pl.len() > 1)
            .then((pl.col("amount").sum() - pl.col("amount").sort_by("day").first()) / (pl.len() - 1))
            .otherwise(0.0).alias("monetary_value"))
    if name == "cohorts":
        cm = t.select("customer_id", pl.col("order_ts").dt.truncate("1mo").alias("m")).unique()
        return (cm.with_columns(pl.col("m").min().over("customer_id").alias("cohort"))
                .group_by("cohort", "m").agg(pl.len().alias("active")))
    if name == "pareto":
        r = t.group_by("customer_id").agg(pl.col("amount").sum().alias("rev")).sort("rev")
        n = pl.len()
        i = pl.int_range(1, n + 1)
        return r.select(
            (pl.col("rev").tail(pl.len().cast(pl.Int64) - (pl.len().cast(pl.Int64) * 4) // 5).sum() / pl.col("rev").sum()).alias("top20_approx"),
            (((2 * i - n - 1) * pl.col("rev")).sum() / (n * pl.col("rev").sum())).alias("gini"))
    if name == "category_share":
        cc = t.group_by("customer_id", "category").agg(pl.col("amount").sum().alias("spend"))
        return cc.with_columns(
            (pl.col("spend") / pl.col("spend").sum().over("customer_id")).alias("share_of_customer"),
            (pl.col("spend") / pl.col("spend").sum().over("category")).alias("share_of_category"))
    raise ValueError(name)


class Failed(Exception):
    """A child that exited non-zero or ran past its time cap."""


def measure(cmd, timeout=None):
    """Run a child once under /usr/bin/time: (seconds, peak RSS MiB, stdout).
    Raises Failed with the end of its stderr (or the cap it ran past)."""
    t0 = time.perf_counter()
    # A session of its own, so a cap stops the measured child too, not only
    # /usr/bin/time.
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M"] + [str(c) for c in cmd], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise Failed(f"timed out after {timeout:.0f} s") from None
    secs = time.perf_counter() - t0
    lines = err.strip().splitlines()
    if p.returncode != 0:
        # The child's own words: its error line, not JSON log records nor
        # /usr/bin/time's lines.
        said = [ln for ln in lines[:-1] if not ln.startswith(("{", "Command exited", "Command terminated"))]
        errors = [ln for ln in said if "error" in ln.lower()]
        msg = " ".join((errors or said or lines)[-2:])[-300:]
        raise Failed(f"exit {p.returncode}: {msg}")
    return secs, int(lines[-1]) / 1024, out


def median_runs(cmd, runs, timeout=None):
    """(median seconds, max peak RSS MiB, last stdout) of `runs` runs."""
    res = [measure(cmd, timeout) for _ in range(runs)]
    return statistics.median(r[0] for r in res), max(r[1] for r in res), res[-1][2]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def first_row(stdout):
    """The first row of `custval sql --format json` output (an array, or JSON lines)."""
    text = stdout.strip()
    v = json.loads(text) if text.startswith("[") else json.loads(text.splitlines()[0])
    return v[0] if isinstance(v, list) else v


def day_number(date):
    """Days since 1970-01-01 of a YYYY-MM-DD date."""
    y, m, d = (int(v) for v in date.split("-"))
    import datetime
    return (datetime.date(y, m, d) - datetime.date(1970, 1, 1)).days


class Bench:
    """One run of the benchmark: arguments, the report lines, the goals."""

    def __init__(self, a):
        self.a = a
        self.cv = a.custval
        self.work = Path(a.work).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.out = []
        self.goals = {}
        self.kinds = a.datasets.split(",")
        self.jobs = {}

    def say(self, s=""):
        print(s, flush=True)
        self.out.append(s)

    def data(self, kind, rows):
        return bench_data.transactions(kind, rows, self.cv, self.work, THREADS)

    def runs_for(self, rows):
        return self.a.runs if rows < self.a.heavy_rows else self.a.heavy_runs

    def job_runs(self, rows):
        return self.a.job_runs if rows < self.a.heavy_rows else self.a.heavy_runs

    def job(self, job, kind, rows, *sets):
        """(median seconds, peak RSS MiB, output folder) of a job on a data set
        with `--set` overrides; measured once per run of this script (the
        sections share a measurement: the nightly job at 20M is also the
        wallet section's `model` row). Raises Failed."""
        key = (job, kind, rows, sets)
        if key not in self.jobs:
            d, end = self.data(kind, rows)
            name = "-".join([Path(job).stem, kind, str(rows), *(x.replace("=", "_") for x in sets)])
            out = self.work / "out" / name
            extra = [v for x in sets for v in ("--set", x)]
            secs, rss, _ = median_runs(self.job_cmd(REPO / "jobs" / job, d, end, out, *extra), self.job_runs(rows),
                                       self.a.job_cap)
            self.jobs[key] = (secs, rss, out)
        return self.jobs[key]

    def job_cmd(self, job, d, end, outdir, *extra):
        return [self.cv, "run", str(job), "--threads", str(THREADS), "--as-of", end,
                "--input", f"transactions={d / 'transactions'}/", "--output", str(outdir), *extra]

    def goal(self, key, text, ratio, target, lower_is_better=True, note=""):
        """A goal's status: met, or the remaining ratio to its target."""
        if ratio is None:
            status = "not measured"
        elif (ratio <= target) if lower_is_better else (ratio >= target):
            status = f"**met** ({ratio:.2f}, target {'<=' if lower_is_better else '>='} {target})"
        else:
            status = f"**gap**: {ratio:.2f} against a target of {target} ({ratio / target:.1f}x to go)"
        self.goals[key] = (text, status + note)


# --- sections ----------------------------------------------------------------

def fits_section(b):
    """Both fits per data set and size: time, iterations, status."""
    a = b.a
    b.say("## Fits per data set and size (custval)")
    b.say()
    b.say("Summaries drawn by scripts/bench_data.py (weeks). One query `SELECT bgnbd_fit(...), gamma_gamma_fit(...)` "
          f"through `custval sql`, process start and reading included; median of {a.runs} runs at the first size, "
          f"{a.heavy_runs} beyond; a query running past {a.fit_cap:.0f} s is stopped and reported.")
    b.say()
    b.say("| data set | customers | both fits (s) | BG/NBD iterations | BG/NBD status | BG/NBD a, b | Gamma-Gamma iterations | Gamma-Gamma status | peak RSS |")
    b.say("|---|---|---|---|---|---|---|---|---|")
    sizes = [int(x) for x in a.fit_customers.split(",")]
    worst, capped = None, False
    for kind in ["generator", "no_dropout", "one_purchase", "patterns_700k"]:
        for i, n in enumerate(sizes):
            summ = bench_data.summary(kind, n, b.work)
            cmd = [b.cv, "sql", "--threads", str(THREADS), "--format", "json", "--table", f"s={summ}",
                   "SELECT bgnbd_fit(frequency, recency, t) AS bg, gamma_gamma_fit(frequency, monetary_value) AS gg FROM s"]
            try:
                secs, rss, stdout = median_runs(cmd, a.runs if i == 0 else a.heavy_runs, a.fit_cap)
            except Failed as e:
                b.say(f"| {kind} | {n:,} | **failed**: {e} | | | | | | |")
                if i == 0:
                    worst = max(worst or 0, a.fit_cap)
                    capped = True
                continue
            r = first_row(stdout)
            bg, gg = r["bg"], r["gg"]
            if i == 0:
                worst = max(worst or 0, secs)
            ab = ", ".join("NULL" if bg.get(k) is None else f"{bg[k]:.3g}" for k in ["a", "b"])
            bound = f" (at bound: {bg['at_bound'][:60]})" if bg.get("at_bound") else ""
            gbound = f" (at bound: {gg['at_bound'][:60]})" if gg.get("at_bound") else ""
            b.say(f"| {kind} | {n:,} | {secs:.2f} | {bg['iterations']} | {bg['status'][:80]}{bound} | {ab} | "
                  f"{gg['iterations']} | {gg['status'][:80]}{gbound} | {rss:.0f} MiB |")
    b.say()
    b.goal("fits", f"both fits on {sizes[0]:,} customers under 1 s on every data set (#1)",
           worst, 1.0, note=f" (at least: a fit was stopped at {a.fit_cap:.0f} s)" if capped else "")


def fits_lifetimes_section(b):
    """BG/NBD and Gamma-Gamma against lifetimes on the generator summary, and
    Pareto/NBD against lifetimes' ParetoNBDFitter (slow: capped)."""
    a = b.a
    n = int(a.pareto_customers)
    summ = bench_data.summary("generator", n, b.work)
    b.say(f"## Fits against lifetimes ({n:,} customers, generator summary)")
    b.say()
    script = b.work / "lifetimes_fit.py"
    script.write_text("""
import json, sys, time
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
s = pd.read_parquet(sys.argv[1])
which = sys.argv[2]
t0 = time.perf_counter()
if which == 'bgnbd':
    f = BetaGeoFitter().fit(s['frequency'], s['recency'], s['t'])
elif which == 'pareto_nbd':
    f = ParetoNBDFitter().fit(s['frequency'], s['recency'], s['t'])
else:
    rep = s[(s['frequency'] > 0) & (s['monetary_value'] > 0)]
    f = GammaGammaFitter().fit(rep['frequency'], rep['monetary_value'])
print(json.dumps({'seconds': time.perf_counter() - t0, 'params': {k: float(v) for k, v in f.params_.items()}}))
""")
    names = {"bgnbd": (["r", "alpha", "a", "b"], "bgnbd_fit(frequency, recency, t)"),
             "gamma_gamma": (["p", "q", "v"], "gamma_gamma_fit(frequency, monetary_value)"),
             "pareto_nbd": (["r", "alpha", "s", "beta"], "pareto_nbd_fit(frequency, recency, t)")}
    b.say(f"custval: `custval sql` wall clock (median of {a.runs}, one for Pareto/NBD; process start included); lifetimes: its `fit` call alone, "
          f"one run, capped at {a.time_cap:.0f} s.")
    b.say()
    b.say("| fit | custval (s) | iterations | lifetimes (s) | lifetimes / custval | max relative parameter difference |")
    b.say("|---|---|---|---|---|---|")
    for model, (keys, call) in names.items():
        slow = model == "pareto_nbd"
        cmd = [b.cv, "sql", "--threads", str(THREADS), "--format", "json", "--table", f"s={summ}", f"SELECT {call} AS f FROM s"]
        try:
            c, _, stdout = median_runs(cmd, 1 if slow else a.runs, a.fit_cap)
            cres = first_row(stdout)["f"]
            its = cres.get("iterations")
        except Failed as e:
            b.say(f"| {model} | **failed**: {e} | | | | |")
            continue
        if slow and a.skip_slow:
            b.say(f"| {model} | {c:.2f} | {its} | skipped (--skip-slow) | | |")
            continue
        try:
            lres = [json.loads(measure([sys.executable, script, summ, model], a.time_cap)[2])]
            lsecs = statistics.median(r["seconds"] for r in lres)
            lp = lres[-1]["params"]
            diff = max(abs(cres[k] / lp[k] - 1) for k in keys) if all(cres.get(k) for k in keys) else float("nan")
            b.say(f"| {model} | {c:.2f} | {its} | {lsecs:.2f} | {lsecs / c:.1f}x | {diff:.2e} |")
        except Failed as e:
            b.say(f"| {model} | {c:.2f} | {its} | {e} | > {a.time_cap / c:.0f}x | |")
        except (KeyError, ValueError) as e:
            b.say(f"| {model} | {c:.2f} | {its} | lifetimes failed: {str(e)[:100]} | | |")
    b.say()


def duckdb_four(con, src, asof, runs):
    """Seconds of DuckDB's four reference queries together (median of runs)."""
    out = tempfile.mkdtemp()
    con.execute(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet('{src}')")
    ts = []
    for _ in range(runs):
        total = 0.0
        for name in ["rfm", "cohorts", "pareto", "category_share"]:
            q = DUCKDB_SQL[name].format(asof=asof)
            total += timed(lambda: con.execute(f"COPY ({q}) TO '{out}/{name}.parquet' (FORMAT parquet)"))
        ts.append(total)
    shutil.rmtree(out, ignore_errors=True)
    return statistics.median(ts)


def job_section(b):
    """The whole nightly job against DuckDB's four queries on the same file."""
    a = b.a
    b.say("## The nightly job against DuckDB's four queries")
    b.say()
    b.say("`custval run jobs/nightly.toml` (validation, deduplication, fits, every table, manifests) against DuckDB running "
          "the four reference queries (RFM, cohorts, Pareto, category share) on the same file, each writing Parquet; "
          f"median of {a.job_runs} runs below {a.heavy_rows:,} rows, {a.heavy_runs} from there; DuckDB median of {a.runs} and {a.heavy_runs}.")
    b.say()
    b.say("| data set | rows | nightly job (s) | peak RSS | DuckDB four queries (s) | job / DuckDB |")
    b.say("|---|---|---|---|---|---|")
    con = duckdb.connect()
    con.execute(f"SET threads={THREADS}")
    worst, steps, failed = None, [], False
    for kind in b.kinds:
        for rows in [int(s) for s in a.sizes.split(",")]:
            d, end = b.data(kind, rows)
            k = duckdb_four(con, str(d / "transactions" / "*.parquet"), day_number(end), b.runs_for(rows))
            try:
                secs, rss, outdir = b.job("nightly.toml", kind, rows)
            except Failed as e:
                b.say(f"| {kind} | {rows:,} | **failed**: {e} | | {k:.2f} | |")
                failed = True
                continue
            worst = max(worst or 0, secs / k)
            b.say(f"| {kind} | {rows:,} | {secs:.1f} | {rss:.0f} MiB | {k:.1f} | {secs / k:.2f} |")
            steps.append((kind, rows, step_times(outdir, end)))
    b.say()
    b.say("Where the job's time goes (the run record's step times, last run; steps of at least 3% of the job):")
    b.say()
    for kind, rows, st in steps:
        b.say(f"- {kind}, {rows:,} rows: {st}")
    b.say()
    b.goal("job", "the nightly job at or below DuckDB's four queries, every data set and size (#2)", worst, 1.0,
           note=" (not counting a run that failed or was stopped: see the table)" if failed else "")


def step_times(outdir, as_of):
    """The slowest steps of a job's last run, from its run record."""
    recs = list((outdir / "_runs").glob(f"*/as_of={as_of}.json"))
    if not recs:
        return "no run record"
    steps = json.loads(recs[0].read_text())["steps"]
    total = sum(s["seconds"] for s in steps)
    big = sorted((s for s in steps if s["seconds"] >= 0.03 * total), key=lambda s: -s["seconds"])
    return ", ".join(f"{s['name']} {s['seconds']:.2f} s" for s in big) + f" (steps in all {total:.1f} s)"


def queries_section(b):
    """Each ad-hoc query through custval sql, DuckDB and Polars, interleaved."""
    a = b.a
    b.say("## Ad-hoc queries (custval sql vs DuckDB vs Polars)")
    b.say()
    b.say(f"Median of {a.runs} runs, the three engines interleaved run by run; seconds.")
    b.say()
    b.say("| data set | rows | query | custval | DuckDB | Polars | custval / best other |")
    b.say("|---|---|---|---|---|---|---|")
    con = duckdb.connect()
    con.execute(f"SET threads={THREADS}")
    worst = None
    for kind in b.kinds:
        for rows in [int(s) for s in a.query_rows.split(",")]:
            d, end = b.data(kind, rows)
            src = str(d / "transactions" / "*.parquet")
            asof = day_number(end)
            con.execute(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet('{src}')")
            res = b.work / "out-query.parquet"
            for name in CUSTVAL_SQL:
                q = CUSTVAL_SQL[name].format(asof=asof)
                cmd = [b.cv, "sql", "--threads", str(THREADS), "--allow-write", "--table", f"t={d / 'transactions'}/",
                       f"COPY ({q}) TO '{res}' STORED AS PARQUET"]
                dq = DUCKDB_SQL[name].format(asof=asof)
                cs, ks, ps, err = [], [], [], None
                for _ in range(b.runs_for(rows)):
                    try:
                        cs.append(measure(cmd, a.time_cap)[0])
                    except Failed as e:
                        err = str(e)
                    ks.append(timed(lambda: con.execute(f"COPY ({dq}) TO '{res}' (FORMAT parquet)")))
                    ps.append(timed(lambda: polars_query(name, src, asof).collect().write_parquet(res)))
                k, p = statistics.median(ks), statistics.median(ps)
                if err:
                    b.say(f"| {kind} | {rows:,} | {name} | **failed**: {err} | {k:.2f} | {p:.2f} | |")
                    continue
                c = statistics.median(cs)
                ratio = c / min(k, p)
                if name != "scan":
                    worst = max(worst or 0, ratio)
                b.say(f"| {kind} | {rows:,} | {name} | {c:.2f} | {k:.2f} | {p:.2f} | {ratio:.2f} |")
    b.say()
    b.goal("queries", "each of the four queries through `custval sql` at or below the faster of DuckDB and Polars (#3)", worst, 1.0)


LIFETIMES_CLV = """
import sys, pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import ConvergenceError, summary_data_from_transaction_data
src, end, out = sys.argv[1:4]
t = pd.read_parquet(src, columns=['customer_id', 'order_ts', 'amount'])
t['order_ts'] = pd.to_datetime(t['order_ts'])
s = summary_data_from_transaction_data(t, 'customer_id', 'order_ts', monetary_value_col='amount',
                                       observation_period_end=end, freq='D', freq_multiplier=7)
rep = s[(s['frequency'] > 0) & (s['monetary_value'] > 0)]
def fit(make, *cols):
    # What a user does when lifetimes does not converge (no heterogeneity:
    # the no-dropout data's spend): a small penalizer.
    try:
        return make(0.0).fit(*cols), 0.0
    except ConvergenceError:
        return make(0.001).fit(*cols), 0.001
bgf, bp = fit(lambda c: BetaGeoFitter(penalizer_coef=c), s['frequency'], s['recency'], s['T'])
ggf, gp = fit(lambda c: GammaGammaFitter(penalizer_coef=c), rep['frequency'], rep['monetary_value'])
clv = ggf.customer_lifetime_value(bgf, s['frequency'], s['recency'], s['T'], s['monetary_value'].clip(lower=0), time=12, discount_rate=0.01, freq='W')
clv.to_frame('clv').to_parquet(out)
print(f"penalizers: BG/NBD {bp}, Gamma-Gamma {gp}")
"""


def clv_section(b):
    """Transactions to per-customer CLV: jobs/clv.toml against lifetimes."""
    a = b.a
    rows = a.clv_rows
    b.say("## Transactions to per-customer CLV (custval vs lifetimes + pandas)")
    b.say()
    b.say("custval runs `jobs/clv.toml` with its defaults (validation, deduplication, RFM, both fits, CLV with intervals, "
          "published with a manifest); lifetimes reads the Parquet with pandas, summarises, fits both models and writes "
          f"the CLV column. One run of lifetimes, median of {b.job_runs(rows)} of custval; peak RSS of the whole process.")
    b.say()
    b.say("| data set | rows | custval (s) | lifetimes (s) | lifetimes / custval | custval peak RSS | lifetimes peak RSS | custval / lifetimes memory |")
    b.say("|---|---|---|---|---|---|---|---|")
    script = b.work / "lifetimes_clv.py"
    script.write_text(LIFETIMES_CLV)
    worst, notes = None, []
    for kind in b.kinds:
        d, end = b.data(kind, rows)
        try:
            c, crss, outdir = b.job("clv.toml", kind, rows)
        except Failed as e:
            b.say(f"| {kind} | {rows:,} | **failed**: {e} | | | | | |")
            continue
        try:
            lsecs, lrss, lout = measure([sys.executable, script, d / "transactions", end, b.work / "lifetimes_clv.parquet"],
                                        a.time_cap)
        except Failed as e:
            b.say(f"| {kind} | {rows:,} | {c:.1f} | lifetimes {e} | | {crss:.0f} MiB | | |")
            continue
        worst = max(worst or 0, crss / lrss)
        b.say(f"| {kind} | {rows:,} | {c:.1f} | {lsecs:.1f} | {lsecs / c:.1f}x | {crss:.0f} MiB | {lrss:.0f} MiB | {crss / lrss:.2f} |")
        notes.append(f"- {kind}: " + clv_agreement(outdir, end, b.work / "lifetimes_clv.parquet")
                     + f" lifetimes' {lout.strip().splitlines()[-1]}.")
    b.say()
    for n in notes:
        b.say(n)
    b.say()
    b.goal("memory", "the CLV path at no more than a quarter of lifetimes' peak memory (#4)", worst, 0.25)


def clv_agreement(outdir, as_of, lifetimes_parquet):
    """How far custval's published CLV is from lifetimes', customer by customer."""
    import pandas as pd
    part = outdir / "customer_clv" / f"as_of={as_of}"
    files = json.loads((part / "_manifest.json").read_text())["files"]
    c = pd.concat([pd.read_parquet(part / f["path"]) for f in files]).set_index("customer_id")
    lt = pd.read_parquet(lifetimes_parquet)
    j = c[["clv"]].join(lt.rename(columns={"clv": "lifetimes_clv"}), how="inner")
    rel = (j["clv"] - j["lifetimes_clv"]).abs() / j["lifetimes_clv"].abs().clip(lower=1e-9)
    return (f"per-customer CLV against lifetimes' on the {len(j):,} customers both report "
            f"({len(c):,} in custval, {len(lt):,} in lifetimes): max relative difference {rel.max():.1e}, "
            f"99th percentile {rel.quantile(0.99):.1e}; totals {j['clv'].sum():,.0f} and {j['lifetimes_clv'].sum():,.0f}.")


def intervals_section(b):
    """jobs/clv.toml with and without the CLV intervals."""
    a = b.a
    rows = a.clv_rows
    b.say("## CLV with and without intervals")
    b.say()
    b.say(f"`jobs/clv.toml` as is, and with `--set {a.intervals_off}` (the switch of the interval work); median of {b.job_runs(rows)}.")
    b.say()
    b.say("| data set | rows | with intervals (s) | without (s) | intervals' share of the job |")
    b.say("|---|---|---|---|---|")
    for kind in b.kinds:
        try:
            on = b.job("clv.toml", kind, rows)[0]
        except Failed as e:
            b.say(f"| {kind} | {rows:,} | **failed**: {e} | | |")
            continue
        try:
            off = b.job("clv.toml", kind, rows, a.intervals_off)[0]
        except Failed as e:
            b.say(f"| {kind} | {rows:,} | {on:.1f} | not available (`--set {a.intervals_off}`: {str(e)[:160]}) | |")
            continue
        b.say(f"| {kind} | {rows:,} | {on:.1f} | {off:.1f} | {(on - off) / on:.0%} |")
    b.say()


def wallets_section(b):
    """The nightly job with wallet_method = model against peer_group (#20)."""
    a = b.a
    rows = a.wallet_rows
    b.say("## Wallet estimate: model against peer_group (issue #20)")
    b.say()
    b.say(f"The whole nightly job with `wallet_method = model` (the default: the job section's measurement where it ran at this size) and `--set wallet_method=peer_group`; median of {b.job_runs(rows)}; on the first data set.")
    b.say()
    b.say("| data set | rows | model (s) | peer_group (s) | added by the model |")
    b.say("|---|---|---|---|---|")
    worst = None
    for kind in b.kinds[:1]:
        t = {}
        try:
            t["model"] = b.job("nightly.toml", kind, rows)[0]
            t["peer_group"] = b.job("nightly.toml", kind, rows, "wallet_method=peer_group")[0]
        except Failed as e:
            b.say(f"| {kind} | {rows:,} | **failed**: {e} | | |")
            continue
        added = t["model"] / t["peer_group"] - 1
        worst = max(worst or -1, added)
        b.say(f"| {kind} | {rows:,} | {t['model']:.1f} | {t['peer_group']:.1f} | {added:+.0%} |")
    b.say()
    b.goal("wallets", "the model wallet adds at most 20% to the nightly job (#20)", worst, 0.20)


def incremental_section(b):
    """A full night against an incremental one: history plus one new day."""
    a = b.a
    rows = a.incremental_rows
    b.say(f"## Full against incremental night ({rows:,} rows of history + one new day)")
    b.say()
    helptext = subprocess.run([b.cv, "run", "--help"], stdout=subprocess.PIPE, text=True).stdout
    if "--incremental" not in helptext:
        b.say("not available: this custval's `run` has no `--incremental`.")
        b.say()
        b.goal("incremental", "an incremental night at most a tenth of the full run (#5)", None, 0.1)
        return
    kind = "no_dropout"
    d, end = b.data(kind, rows)
    import datetime
    new_day = (datetime.date.fromisoformat(end) + datetime.timedelta(days=1)).isoformat()
    inc = b.work / f"incremental-{rows}"
    tx = inc / "transactions"
    if not (inc / "meta.json").exists():
        tx.mkdir(parents=True, exist_ok=True)
        for f in sorted((d / "transactions").glob("*.parquet")):
            if not (tx / f.name).exists():
                (tx / f.name).symlink_to(f)
        # One day's rows (the history's daily rate) for customers drawn from it.
        con = duckdb.connect()
        con.execute(f"SET threads={THREADS}")
        con.execute(f"""COPY (SELECT customer_id, order_id + {rows} AS order_id, DATE '{new_day}' AS order_ts, amount, margin, category
                              FROM read_parquet('{d / 'transactions' / '*.parquet'}') USING SAMPLE {max(1, rows // 730)} ROWS)
                        TO '{tx / 'new-day.parquet'}' (FORMAT parquet, COMPRESSION zstd)""")
        (inc / "meta.json").write_text(json.dumps({"end": new_day}))
    hist = b.work / f"incremental-{rows}-history"
    (hist / "transactions").mkdir(parents=True, exist_ok=True)
    for f in sorted((d / "transactions").glob("*.parquet")):
        if not (hist / "transactions" / f.name).exists():
            (hist / "transactions" / f.name).symlink_to(f)
    out = b.work / f"incremental-out-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        measure(b.job_cmd(REPO / "jobs/nightly.toml", hist, end, out), a.job_cap)  # last night: the state
        full, _, _ = measure(b.job_cmd(REPO / "jobs/nightly.toml", inc, new_day, b.work / f"incremental-full-{rows}"), a.job_cap)
        incr, _, _ = measure(b.job_cmd(REPO / "jobs/nightly.toml", inc, new_day, out, "--incremental"), a.job_cap)
    except Failed as e:
        b.say(f"failed: {e}")
        b.say()
        return
    b.say("| rows of history | full night (s) | incremental night (s) | incremental / full |")
    b.say("|---|---|---|---|")
    b.say(f"| {rows:,} | {full:.1f} | {incr:.1f} | {incr / full:.3f} |")
    b.say()
    b.goal("incremental", "an incremental night at most a tenth of the full run (#5)", incr / full, 0.1)


def profile_section(b):
    """The nightly job under `perf record -g` at the first of --sizes: its
    hottest functions (the flame graph's widest frames), from `perf report`."""
    kind, rows = b.kinds[0], int(b.a.sizes.split(",")[0])
    d, end = b.data(kind, rows)
    data = b.work / f"perf-nightly-{kind}-{rows}.data"
    b.say(f"## Profile of the nightly job ({kind}, {rows:,} rows)")
    b.say()
    try:
        secs = measure(["perf", "record", "-g", "-F", "499", "-o", data, "--",
                        *b.job_cmd(REPO / "jobs" / "nightly.toml", d, end, b.work / "out" / "perf-nightly")])[0]
    except (Failed, FileNotFoundError) as e:
        b.say(f"not available: `perf record` failed ({e}).")
        b.say()
        return
    rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                          "--percent-limit", "1", "--sort", "dso,symbol"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    top = [ln[:130].rstrip() for ln in rep.splitlines() if ln.strip() and not ln.startswith("#")][:30]
    b.say(f"{secs:.1f} s under perf (499 samples per second, call graphs in `{data}`: "
          f"`perf script -i {data.name} | inferno-collapse-perf | inferno-flamegraph` draws the flame graph). "
          "Functions with at least 1% of the samples (self time):")
    b.say()
    b.say("```")
    for ln in top:
        b.say(ln)
    b.say("```")
    b.say()


SECTIONS = {
    "fits": fits_section,
    "lifetimes_fits": fits_lifetimes_section,
    "job": job_section,
    "queries": queries_section,
    "clv": clv_section,
    "intervals": intervals_section,
    "wallets": wallets_section,
    "incremental": incremental_section,
    "profile": profile_section,
}
# The default: issue 17's table (the profile is asked for by name).
DEFAULT_SECTIONS = [n for n in SECTIONS if n != "profile"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--custval", required=True)
    ap.add_argument("--only", default=",".join(DEFAULT_SECTIONS),
                    help=f"sections, comma-separated: {', '.join(SECTIONS)} (all but profile by default)")
    ap.add_argument("--datasets", default="generator,no_dropout", help="transaction data sets: generator, no_dropout")
    ap.add_argument("--sizes", default="20000000,100000000", help="rows of the nightly job against DuckDB's four queries")
    ap.add_argument("--query-rows", default="20000000", help="rows of the ad-hoc query comparison")
    ap.add_argument("--fit-customers", default="1000000,10000000", help="summary sizes of the fits section")
    ap.add_argument("--pareto-customers", type=int, default=1000000, help="customers of the fits against lifetimes")
    ap.add_argument("--clv-rows", type=int, default=20000000, help="rows of the CLV and interval sections")
    ap.add_argument("--wallet-rows", type=int, default=20000000, help="rows of the wallet section")
    ap.add_argument("--incremental-rows", type=int, default=100000000, help="rows of history of the incremental section")
    ap.add_argument("--runs", type=int, default=3, help="runs per query and fit measurement (median)")
    ap.add_argument("--job-runs", type=int, default=1, help="runs per whole-job measurement (median)")
    ap.add_argument("--heavy-rows", type=int, default=50000000, help="from this many rows, --heavy-runs runs")
    ap.add_argument("--heavy-runs", type=int, default=1)
    ap.add_argument("--fit-cap", type=float, default=60, help="seconds after which a custval fit is stopped (the goal is 1 s)")
    ap.add_argument("--time-cap", type=float, default=240, help="seconds after which a lifetimes run or an ad-hoc query is stopped")
    ap.add_argument("--job-cap", type=float, default=900, help="seconds after which a whole job is stopped and reported")
    ap.add_argument("--skip-slow", action="store_true", help="leave lifetimes' Pareto/NBD fit out (minutes)")
    ap.add_argument("--intervals-off", default="interval=0", help="the --set that turns CLV intervals off")
    ap.add_argument("--work", default="target-bench")
    a = ap.parse_args()
    b = Bench(a)
    only = a.only.split(",")
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        sys.exit(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    ver = subprocess.run([b.cv, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    import lifetimes
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    b.say(f"# Benchmark run ({started})")
    b.say()
    b.say(f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    b.say(f"- {ver}; duckdb {duckdb.__version__}; polars {pl.__version__}; lifetimes {lifetimes.__version__}; python {platform.python_version()}")
    b.say(f"- threads: {THREADS} for every engine; command: `scripts/bench {' '.join(sys.argv[3:])}`")
    b.say()
    took = []
    for name in only:
        t0 = time.perf_counter()
        SECTIONS[name](b)
        took.append((name, time.perf_counter() - t0))
    if b.goals:
        b.say("## Goals of issue 17")
        b.say()
        b.say("| goal | status |")
        b.say("|---|---|")
        for text, status in b.goals.values():
            b.say(f"| {text} | {status} |")
        b.say()
    b.say("Time per section (data generation included the first time): "
          + ", ".join(f"{n} {s:.0f} s" for n, s in took) + ".")
    (b.work / "report.md").write_text("\n".join(b.out) + "\n")


if __name__ == "__main__":
    main()
