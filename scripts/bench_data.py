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
- one_purchase: everyone leaves after their first repeat purchase (at most
  one repeat purchase each: the optimum is at p -> 1);
- patterns_700k: 700,000 distinct (frequency, recency, t) patterns in
  continuous time, customers beyond 700,000 repeating them.
Spend per repeat purchase is Gamma-Gamma in every summary.
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
        t = np.floor(731 - rng.uniform(0, 365, n))
        lam = rng.gamma(0.9, 1.0 / 7.0, n) / WEEK_DAYS
        q = 1 - np.exp(-lam * t)  # P(a repeat purchase within T)
        x = (rng.uniform(size=n) < q).astype(np.int64)
        u = rng.uniform(size=n)
        first_event = -np.log1p(-u * q) / np.maximum(lam, 1e-300)  # truncated exponential on (0, T)
        rec = np.where(x > 0, np.floor(first_event), 0.0)
    elif kind == "patterns_700k":
        k = min(n, 700_000)
        x0, _, _ = _bgnbd(rng, k)
        t0 = rng.uniform(365, 731, k)
        r0 = np.where(x0 > 0, t0 * rng.uniform(size=k), 0.0)
        pick = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
        x, rec, t = x0[pick], r0[pick], t0[pick]
    else:
        raise ValueError(kind)
    x = np.asarray(x, dtype=np.int64)
    m = _gamma_gamma(rng, x)
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
