"""Benchmark driver for scripts/bench: custval vs DuckDB, Polars and lifetimes.

Every engine gets 2 threads, reads the same Parquet files and writes its
result to Parquet (so no engine can skip work); each measurement is the
median of --runs wall-clock runs; ratios are computed within one run of this
script, since the machine is noisy. Peak memory is the child's max RSS.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ["POLARS_MAX_THREADS"] = "2"

import duckdb  # noqa: E402
import polars as pl  # noqa: E402

THREADS = 2

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
    "cohorts": """
        WITH cm AS (SELECT customer_id, date_trunc('month', order_ts) AS m FROM t GROUP BY 1, 2),
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
    "cohorts": CUSTVAL_SQL["cohorts"],
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


def timed(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_child(cmd):
    """Run a child; return (seconds, stdout). Exits with its stderr on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return secs, p.stdout


def time_child(cmd, runs):
    """Median wall-clock seconds of `runs` runs of a child."""
    return statistics.median(run_child(cmd)[0] for _ in range(runs))


def peak_rss(cmd):
    """Peak RSS (MiB) of one run, via /usr/bin/time -f %M."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return int(p.stderr.strip().splitlines()[-1]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--custval", required=True)
    ap.add_argument("--sizes", default="1000000,20000000", help="transaction counts (about 13 rows per customer)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fit-customers", default="1000000,10000000", help="summary sizes; lifetimes runs on the first only")
    ap.add_argument("--clv-rows", type=int, default=20000000, help="rows for the transactions-to-CLV comparison with lifetimes")
    ap.add_argument("--work", default="target-bench")
    ap.add_argument("--interval-customers", type=int, default=1000000, help="customers for the intervals section")
    ap.add_argument("--only", default="queries,fits,clv", help="sections to run: queries (with the nightly job), fits, clv, intervals (jobs/clv.toml with and without clv_low / clv_high)")
    a = ap.parse_args()
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cv = a.custval
    out = []
    say = lambda s="": (print(s, flush=True), out.append(s))  # noqa: E731
    ver = subprocess.run([cv, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    import lifetimes
    say("# Benchmark run")
    say()
    say(f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    say(f"- {ver}; duckdb {duckdb.__version__}; polars {pl.__version__}; lifetimes {lifetimes.__version__}; python {platform.python_version()}")
    say(f"- threads: {THREADS} for every engine; median of {a.runs} runs; seconds")
    say()

    def dataset(rows):
        customers = max(1000, rows // 13)
        d = work / f"data-{rows}"
        if not (d / "truth.json").exists():
            subprocess.run([cv, "generate", "--customers", str(customers), "--out", str(d), "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
        truth = json.loads((d / "truth.json").read_text())
        return d, truth

    only = set(a.only.split(","))
    scaling = []
    if "queries" in only:
        queries_section(a, cv, say, dataset, scaling)
    if "fits" in only:
        fits_section(a, cv, say, dataset)
    if "clv" in only:
        clv_section(a, cv, say, dataset, work)
    if "intervals" in only:
        intervals_section(a, cv, say, dataset, work)
    if scaling:
        say("## Scaling of the whole nightly job")
        say()
        say("| rows | seconds | seconds per million rows | peak RSS |")
        say("|---|---|---|---|")
        for rows, secs, rss in scaling:
            say(f"| {rows:,} | {secs:.1f} | {secs / rows * 1e6:.2f} | {rss:.0f} MiB |")
    (work / "report.md").write_text("\n".join(out) + "\n")


def queries_section(a, cv, say, dataset, scaling):
    work = Path(a.work).resolve()
    say("## Queries (custval sql vs DuckDB vs Polars)")
    say()
    say("| rows | query | custval | DuckDB | Polars | custval / best other |")
    say("|---|---|---|---|---|---|")
    failures = []
    for rows in [int(s) for s in a.sizes.split(",")]:
        d, truth = dataset(rows)
        src = str(d / "transactions" / "*.parquet")
        asof_day = (time.mktime(time.strptime(truth["end"], "%Y-%m-%d")) // 86400)
        asof_day = int(round(asof_day))
        con = duckdb.connect()
        con.execute(f"SET threads={THREADS}")
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{src}')")
        for name in CUSTVAL_SQL:
            res = work / f"out-{name}.parquet"
            q = CUSTVAL_SQL[name].format(asof=asof_day)
            cmd = [cv, "sql", "--threads", str(THREADS), "--allow-write", "--table", f"t={d / 'transactions'}/",
                   f"COPY ({q}) TO '{res}' STORED AS PARQUET"]
            try:
                c = time_child(cmd, a.runs)
            except SystemExit as e:  # reported in the table, not hidden
                c = None
                err = str(e).strip().splitlines()[-1][:300]
                failures.append(f"custval {name} at {rows:,} rows failed: {err}")
            dq = DUCKDB_SQL[name].format(asof=asof_day)
            k = timed(lambda: con.execute(f"COPY ({dq}) TO '{res}' (FORMAT parquet)"), a.runs)
            p = timed(lambda: polars_query(name, src, asof_day).collect().write_parquet(res), a.runs)
            best = min(k, p)
            if c is None:
                say(f"| {rows:,} | {name} | **failed** (below) | {k:.2f} | {p:.2f} | |")
            else:
                say(f"| {rows:,} | {name} | {c:.2f} | {k:.2f} | {p:.2f} | {c / best:.2f} |")
        # The whole nightly job.
        outdir = work / f"job-{rows}"
        cmd = [cv, "run", "jobs/nightly.toml", "--threads", str(THREADS), "--as-of", truth["end"],
               "--input", f"transactions={d / 'transactions'}/", "--output", str(outdir)]
        job_secs = time_child(cmd, a.runs)
        job_rss = peak_rss(cmd)
        scaling.append((rows, job_secs, job_rss))
        say(f"| {rows:,} | whole nightly job | {job_secs:.2f} | | | peak RSS {job_rss:.0f} MiB |")
    say()
    for f in failures:
        say(f"- {f}")
    if failures:
        say()



def fit_summary(a, cv, dataset, n):
    """The RFM summary (weeks) of about n generated customers, as Parquet."""
    work = Path(a.work).resolve()
    d, truth = dataset(n * 13)
    summ = work / f"summary-{n}.parquet"
    if not summ.exists():
        asof_day = int(round(time.mktime(time.strptime(truth["end"], "%Y-%m-%d")) // 86400))
        q = CUSTVAL_SQL["rfm"].format(asof=asof_day)
        subprocess.run([cv, "sql", "--allow-write", "--table", f"t={d / 'transactions'}/", f"COPY ({q}) TO '{summ}' STORED AS PARQUET"], check=True, stdout=subprocess.DEVNULL)
    return summ, truth


def fits_section(a, cv, say, dataset):
    say("## Model fits on the same summary (custval vs lifetimes)")
    say()
    sizes = [int(x) for x in str(a.fit_customers).split(",")]
    n = sizes[0]
    summ, truth = fit_summary(a, cv, dataset, n)

    def cv_fit(select, path, runs):
        cmd = [cv, "sql", "--threads", str(THREADS), "--format", "json", "--table", f"s={path}", f"SELECT {select} FROM s"]
        secs = time_child(cmd, runs)
        return secs, json.loads(run_child(cmd)[1].splitlines()[0])

    bg_sel = "bgnbd_fit(frequency, recency, t) AS bg"
    gg_sel = "gamma_gamma_fit(frequency, monetary_value) AS gg"
    c_bg, res = cv_fit(bg_sel, summ, a.runs)
    c_gg, res_gg = cv_fit(gg_sel, summ, a.runs)
    c_both, _ = cv_fit(f"{bg_sel}, {gg_sel}", summ, a.runs)
    res.update(res_gg)
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    s = pd.read_parquet(summ)
    l_bgs, l_ggs = [], []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        bgf = BetaGeoFitter().fit(s["frequency"], s["recency"], s["t"])
        l_bgs.append(time.perf_counter() - t0)
        rep = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
        t0 = time.perf_counter()
        try:
            ggf = GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
            gg_params = ggf.params_.to_dict()
        except Exception as e:  # lifetimes' GG often fails without a penalizer
            gg_params = {"error": str(e)[:200]}
        l_ggs.append(time.perf_counter() - t0)
    l_bg, l_gg = statistics.median(l_bgs), statistics.median(l_ggs)
    rel = max(abs(res["bg"][k] / bgf.params_[k] - 1) for k in ["r", "alpha", "a", "b"])
    rel_gg = (max(abs(res["gg"][k] / gg_params[k] - 1) for k in ["p", "q", "v"])
              if "error" not in gg_params else float("nan"))
    say("Wall-clock seconds; custval's include starting the process and reading the summary, lifetimes' only its `fit` call.")
    say()
    say("| customers | fit | custval | lifetimes | lifetimes / custval | max relative parameter difference |")
    say("|---|---|---|---|---|---|")
    say(f"| {len(s):,} | BG/NBD | {c_bg:.2f} | {l_bg:.2f} | {l_bg / c_bg:.1f}x | {rel:.2e} |")
    say(f"| {len(s):,} | Gamma-Gamma | {c_gg:.2f} | {l_gg:.2f} | {l_gg / c_gg:.1f}x | {rel_gg:.2e} |")
    say(f"| {len(s):,} | both, one query | {c_both:.2f} | {l_bg + l_gg:.2f} | {(l_bg + l_gg) / c_both:.1f}x | |")
    say()
    say(f"custval: bgnbd {json.dumps(res['bg'])}; gamma_gamma {json.dumps(res['gg'])}")
    say()
    say(f"lifetimes: bgnbd {json.dumps(bgf.params_.to_dict())}; gamma_gamma {json.dumps(gg_params)}")
    say()
    say(f"true parameters (generate): {json.dumps(truth['bgnbd'])}, {json.dumps(truth['gamma_gamma'])}")
    say()
    if len(sizes) > 1:
        say("### custval alone on larger summaries")
        say()
        say("| customers | BG/NBD fit | iterations | both fits, one query | peak RSS (both) | BG/NBD max relative difference from the true parameters |")
        say("|---|---|---|---|---|---|")
        for n in sizes[1:]:
            summ, truth = fit_summary(a, cv, dataset, n)
            c_bg, res = cv_fit(bg_sel, summ, a.runs)
            cmd = [cv, "sql", "--threads", str(THREADS), "--format", "json", "--table", f"s={summ}", f"SELECT {bg_sel}, {gg_sel} FROM s"]
            c_both = time_child(cmd, a.runs)
            rss = peak_rss(cmd)
            far = max(abs(res["bg"][k] / truth["bgnbd"][k] - 1) for k in ["r", "alpha", "a", "b"])
            rows = int(json.loads(run_child([cv, "sql", "--format", "json", "--table", f"s={summ}", "SELECT count(*) AS n FROM s"])[1].splitlines()[0])["n"])
            say(f"| {rows:,} | {c_bg:.2f} | {res['bg']['iterations']} | {c_both:.2f} | {rss:.0f} MiB | {far:.3f} |")
        say()


def clv_agreement(outdir, as_of, lifetimes_parquet):
    """How far custval's published CLV is from lifetimes', customer by customer."""
    import pandas as pd
    part = outdir / "customer_clv" / f"as_of={as_of}"
    c = pd.concat([pd.read_parquet(f) for f in sorted(part.glob("*.parquet"))]).set_index("customer_id")
    lt = pd.read_parquet(lifetimes_parquet)
    j = c[["clv"]].join(lt.rename(columns={"clv": "lifetimes_clv"}), how="inner")
    rel = (j["clv"] - j["lifetimes_clv"]).abs() / j["lifetimes_clv"].abs().clip(lower=1e-9)
    return (f"Per-customer CLV against lifetimes' on the {len(j):,} customers both report "
            f"({len(c):,} in custval, {len(lt):,} in lifetimes): max relative difference {rel.max():.1e}, "
            f"99th percentile {rel.quantile(0.99):.1e}; totals {j['clv'].sum():,.0f} and {j['lifetimes_clv'].sum():,.0f}.")


def clv_section(a, cv, say, dataset, work):
    say("## Transactions to per-customer CLV (custval run vs lifetimes + pandas)")
    say()
    rows = a.clv_rows
    d, truth = dataset(rows)
    outdir = work / f"clv-{rows}"
    cmd = [cv, "run", "jobs/clv.toml", "--threads", str(THREADS), "--as-of", truth["end"],
           "--input", f"transactions={d / 'transactions'}/", "--output", str(outdir)]
    c_secs = time_child(cmd, a.runs)
    c_rss = peak_rss(cmd)
    script = work / "lifetimes_clv.py"
    script.write_text(f"""
import pandas as pd, time
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data
t = pd.read_parquet('{d / 'transactions'}', columns=['customer_id', 'order_ts', 'amount'])
t['order_ts'] = pd.to_datetime(t['order_ts'])
s = summary_data_from_transaction_data(t, 'customer_id', 'order_ts', monetary_value_col='amount',
                                       observation_period_end='{truth['end']}', freq='D', freq_multiplier=7)
bgf = BetaGeoFitter().fit(s['frequency'], s['recency'], s['T'])
rep = s[(s['frequency'] > 0) & (s['monetary_value'] > 0)]
ggf = GammaGammaFitter(penalizer_coef=0.0).fit(rep['frequency'], rep['monetary_value'])
clv = ggf.customer_lifetime_value(bgf, s['frequency'], s['recency'], s['T'], s['monetary_value'].clip(lower=0), time=12, discount_rate=0.01, freq='W')
clv.to_frame('clv').to_parquet('{work / 'lifetimes_clv.parquet'}')
""")
    py = sys.executable
    try:
        l_secs, _ = run_child([py, str(script)])
        l_rss = peak_rss([py, str(script)])
        say("custval runs `jobs/clv.toml` (validation, deduplication, RFM, both fits, per-customer CLV, published with a manifest); lifetimes reads the Parquet with pandas, summarises, fits both models and writes the CLV column.")
        say()
        say("| rows | custval jobs/clv.toml | lifetimes + pandas | speed-up | custval peak RSS | lifetimes peak RSS |")
        say("|---|---|---|---|---|---|")
        say(f"| {rows:,} | {c_secs:.1f} | {l_secs:.1f} | {l_secs / c_secs:.1f}x | {c_rss:.0f} MiB | {l_rss:.0f} MiB |")
        say()
        say(clv_agreement(outdir, truth["end"], work / "lifetimes_clv.parquet"))
    except SystemExit as e:
        say(f"lifetimes failed on {rows:,} rows: {str(e)[-500:]}")
        say(f"custval: {c_secs:.1f} s, peak RSS {c_rss:.0f} MiB")
    say()


def step_seconds(log, step):
    """The seconds custval's progress log ("step done", JSON lines) gives a step."""
    for line in log.splitlines():
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if fields.get("message") == "step done" and fields.get("step") == step:
            return float(fields["seconds"])
    sys.exit(f"no 'step done' for {step} in the log:\n{log[-3000:]}")


def intervals_section(a, cv, say, dataset, work):
    """The cost of clv_low / clv_high: jobs/clv.toml with the default interval
    (0.9) and with interval=0 (none), on the same data; the customer_scores
    step computes P(alive), expected purchases and spend, the CLV and, with
    an interval, its ends."""
    customers = a.interval_customers
    d, truth = dataset(customers * 13)
    say(f"## CLV intervals: jobs/clv.toml with and without clv_low / clv_high ({customers:,} customers)")
    say()
    say("| interval | whole job | customer_scores step |")
    say("|---|---|---|")
    medians = {}
    for level in ["0.9", "0"]:
        cmd = [cv, "run", "jobs/clv.toml", "--threads", str(THREADS), "--as-of", truth["end"],
               "--input", f"transactions={d / 'transactions'}/", "--output", str(work / f"intervals-{level}"),
               "--set", f"interval={level}"]
        runs = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            secs = time.perf_counter() - t0
            if p.returncode != 0:
                sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout[-3000:]}")
            runs.append((secs, step_seconds(p.stdout, "customer_scores")))
        medians[level] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        say(f"| {level} | {medians[level][0]:.2f} | {medians[level][1]:.2f} |")
    (job, step), (job0, step0) = medians["0.9"], medians["0"]
    say()
    say(f"With the interval the scoring step takes {step / step0:.2f}x its time without ({step - step0:.2f} s more), the whole job {job / job0:.2f}x.")
    say()


if __name__ == "__main__":
    main()
