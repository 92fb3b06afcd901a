"""The benchmark's data sets (scripts/bench.py): transaction files and
per-customer summaries, each made once under the work folder and kept.

Transaction files (one folder `transactions/` each, the days of order_ts
as DATE, like `custval generate`):
- generator: `custval generate --seed 1`, about 13 rows per customer drawn
  from the BG/NBD and Gamma-Gamma models themselves;
- no_dropout: issue 17's shop where nobody leaves, made by DuckDB: one
  customer per 20 rows (so about 20 orders each, Poisson), two years
  (2023-01-01 to 2024-12-30), each row's day uniform over the window (rows
  are written in day order, as an export would be), one order id per row,
  8 categories, log-normal amounts, one zstd Parquet file.

Per-customer summaries for the fits (weeks; numpy, seeded; days are whole
days, so customers share patterns as real RFM summaries do):
- generator: BG/NBD draws with the generator's parameters (r 0.9, alpha 7,
  a 0.8, b 6; Gamma-Gamma p 6.25, q 3.74, v 15.44), first purchase uniform
  over the first year, observed to the end of the second;
- no_dropout: about 20 uniform orders per customer over two years, nobody
  leaves (the BG/NBD optimum is at a -> 0, the NBD limit);
- one_purchase: everyone bought once and never again (frequency 0);
- patterns_700k: 700,000 distinct (frequency, recency, t) patterns in
  continuous time, customers beyond 700,000 repeating them.
Spend per repeat purchase is Gamma-Gamma, except no_dropout's: the mean of
the customer's log-normal amounts, the same distribution for everyone (as in
its transaction file: no spend heterogeneity, a Gamma-Gamma boundary).
The boundary sets follow src/udf/shapes.rs, where a test holds each fit's
iteration count under its budget.
"""
import json
import subprocess
from pathlib import Path

import numpy as np

WEEK_DAYS = 7.0
NO_DROPOUT_START = "2023-01-01"
NO_DROPOUT_END = "2024-12-30"  # day 729 of the window
NO_DROPOUT_DAYS = 730
ROWS_PER_CUSTOMER = {"generator": 13, "no_dropout": 20}


def transactions(kind, rows, cv, work, threads):
    """The folder of `kind`'s transactions at about `rows` rows, and its
    last day (YYYY-MM-DD); made on first use."""
    d = Path(work) / f"{kind}-{rows}"
    meta = d / "meta.json"
    if meta.exists():
        return d, json.loads(meta.read_text())["end"]
    customers = max(1000, rows // ROWS_PER_CUSTOMER[kind])
    if kind == "generator":
        subprocess.run([cv, "generate", "--customers", str(customers), "--out", str(d), "--seed", "1", "-q"],
                       check=True, stdout=subprocess.DEVNULL)
        end = json.loads((d / "truth.json").read_text())["end"]
    elif kind == "no_dropout":
        import duckdb
        (d / "transactions").mkdir(parents=True, exist_ok=True)
        con = duckdb.connect()
        con.execute(f"SET threads={threads}")
        con.execute("SELECT setseed(0.17)")
        # Box-Muller for the log-normal amounts; the day is monotone in the
        # row number, so the file is in time order without a sort.
        con.execute(f"""
            COPY (
              SELECT CAST(1 + floor(random() * {customers}) AS BIGINT) AS customer_id,
                     CAST(range + 1 AS BIGINT) AS order_id,
                     CAST(DATE '{NO_DROPOUT_START}' + CAST(range * {NO_DROPOUT_DAYS} // {rows} AS INTEGER) AS DATE) AS order_ts,
                     round(exp(3.0 + 0.6 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())), 2) AS amount,
                     round(0.3 * random() * 20, 2) AS margin,
                     ['books', 'music', 'games', 'toys', 'garden', 'food', 'home', 'sport'][1 + CAST(floor(random() * 8) AS INTEGER)] AS category
              FROM range({rows})
            ) TO '{d / "transactions" / "part-00000.parquet"}' (FORMAT parquet, COMPRESSION zstd)""")
        end = NO_DROPOUT_END
    else:
        raise ValueError(kind)
    meta.write_text(json.dumps({"kind": kind, "rows": rows, "customers": customers, "end": end}))
    return d, end


def _gamma_gamma(rng, x, p=6.25, q=3.74, v=15.44):
    """Mean spend per repeat purchase of customers with x repeat purchases
    (0 where x = 0): Gamma-Gamma draws."""
    nu = rng.gamma(q, 1.0 / v, size=x.shape)
    m = np.zeros(x.shape)
    k = x > 0
    m[k] = rng.gamma(p * x[k], 1.0 / (nu[k] * x[k]))
    return m


def _iid_spend(rng, x, chunk=1_000_000):
    """Mean of x log-normal amounts (the no-dropout file's: exp(3 + 0.6 z)),
    the same distribution for every customer (no spend heterogeneity)."""
    m = np.zeros(x.shape)
    for lo in range(0, len(x), chunk):
        xs = x[lo:lo + chunk]
        k = xs > 0
        amounts = np.exp(3.0 + 0.6 * rng.standard_normal(int(xs[k].sum())))
        starts = np.concatenate([[0], np.cumsum(xs[k])[:-1]])
        m[lo:lo + chunk][k] = np.add.reduceat(amounts, starts) / xs[k] if k.any() else 0.0
    return m


def _bgnbd(rng, n, r=0.9, alpha=7.0, a=0.8, b=6.0):
    """BG/NBD customers in whole days: (x, recency, T) in weeks."""
    t_days = np.floor(731 - rng.uniform(0, 365, n))
    lam = rng.gamma(r, 1.0 / alpha, n) / WEEK_DAYS  # per day
    p = rng.beta(a, b, n)
    events = rng.poisson(lam * t_days)  # purchases in (0, T] if alive
    alive_for = rng.geometric(p)  # repeat purchases made before leaving (the last one included)
    x = np.minimum(events, alive_for)
    # The x-th of `events` uniform times on (0, T).
    rec = np.where(x > 0, t_days * rng.beta(np.maximum(x, 1), np.maximum(events - x + 1, 1)), 0.0)
    return x, np.floor(rec), t_days


def summary(kind, n, work, seed=1):
    """Parquet path of the per-customer summary `kind` of n customers
    (customer_id, frequency, recency, t, monetary_value; weeks)."""
    Path(work).mkdir(parents=True, exist_ok=True)
    path = Path(work) / f"summary-{kind}-{n}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    if kind == "generator":
        x, rec, t = _bgnbd(rng, n)
    elif kind == "no_dropout":
        orders = np.maximum(rng.poisson(20, n), 1)
        u_first = rng.beta(1, orders)  # the earliest of `orders` uniform days
        first = np.floor(u_first * NO_DROPOUT_DAYS)
        rest = NO_DROPOUT_DAYS - 1 - first
        last = first + np.floor(rest * rng.beta(np.maximum(orders - 1, 1), 1))
        x = (orders - 1).astype(np.int64)
        rec = np.where(x > 0, last - first, 0.0)
        t = NO_DROPOUT_DAYS - 1 - first
    elif kind == "one_purchase":
        # Everyone bought once and never again (as src/udf/shapes.rs).
        x = np.zeros(n, dtype=np.int64)
        rec = np.zeros(n)
        t = np.floor(rng.uniform(0, 728, n))
    elif kind == "patterns_700k":
        # Continuous times (no rounding to days), so each customer is a
        # pattern of their own, as src/udf/shapes.rs draws them: rates
        # Gamma(0.5, mean 10 over two years), first purchase uniform over the
        # two years, dropout after each repeat purchase with probability 0.2.
        k = min(n, 700_000)
        t0 = rng.uniform(0, 728, k)
        events = rng.poisson(rng.gamma(0.5, 20.0 / 728, k) * t0)
        x0 = np.minimum(events, rng.geometric(0.2, k))
        r0 = np.where(x0 > 0, t0 * rng.beta(np.maximum(x0, 1), np.maximum(events - x0 + 1, 1)), 0.0)
        pick = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
        x, rec, t = x0[pick], r0[pick], t0[pick]
    else:
        raise ValueError(kind)
    x = np.asarray(x, dtype=np.int64)
    m = _iid_spend(rng, x) if kind == "no_dropout" else _gamma_gamma(rng, x)
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({
        "customer_id": np.arange(1, n + 1, dtype=np.int64),
        "frequency": x.astype(np.float64),
        "recency": np.asarray(rec, dtype=np.float64) / WEEK_DAYS,
        "t": np.asarray(t, dtype=np.float64) / WEEK_DAYS,
        "monetary_value": m,
    })
    pq.write_table(table, path, compression="zstd")
    return path
