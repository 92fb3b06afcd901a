#!/usr/bin/env python3
"""Compare the published tables of two runs of jobs/nightly.toml (e.g. before
and after a change of its SQL): rows matched on each table's key; exact for
strings, integers, booleans and dates, 1e-9 relative for floats (NaN equals
NaN); NULLs must match, and row counts. Prints per table the differing values
per column and the largest float relative difference.

Usage: ~/.cache/custval-tools/bench-venv/bin/python scripts/compare_outputs.py OUT_A OUT_B AS_OF
(the benchmark's virtualenv has duckdb). Exit 1 on any difference."""
import sys, glob
import duckdb
A, B, AS_OF = sys.argv[1:4]
KEYS = {
    "customer_tiers": ["customer_id"],
    "model_fit": ["model"],
    "concentration": ["measure"],
    "retention_cohorts": ["cohort", "period"],
    "retention_rates": ["period_start"],
    "customer_category_share": ["customer_id", "category"],
    "rejected_rows": ["customer_id", "order_ts", "amount", "order_id", "category", "margin", "reason"],
    "tier_transitions": ["previous_tier", "tier"],
    "retention_scenarios": ["uplift_points", "tier"],
}
con = duckdb.connect()
bad = 0
for table, keys in KEYS.items():
    fa = glob.glob(f"{A}/{table}/as_of={AS_OF}/**/*.parquet", recursive=True)
    fb = glob.glob(f"{B}/{table}/as_of={AS_OF}/**/*.parquet", recursive=True)
    con.execute(f"CREATE OR REPLACE TABLE a AS SELECT * FROM read_parquet({fa!r}, hive_partitioning=false)")
    con.execute(f"CREATE OR REPLACE TABLE b AS SELECT * FROM read_parquet({fb!r}, hive_partitioning=false)")
    ca = con.execute("DESCRIBE a").fetchall()
    cb = con.execute("DESCRIBE b").fetchall()
    if [c[:2] for c in ca] != [c[:2] for c in cb]:
        print(f"{table}: schemas differ"); bad += 1; continue
    na, nb = con.execute("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)").fetchone()
    on = " AND ".join(f'a."{k}" IS NOT DISTINCT FROM b."{k}"' for k in keys)
    checks = []
    for name, typ, *_ in ca:
        x, y = f'a."{name}"', f'b."{name}"'
        if typ in ("DOUBLE", "FLOAT"):
            same = (f"(({x} IS NULL AND {y} IS NULL) OR (isnan({x}) AND isnan({y})) OR {x} = {y} "
                    f"OR abs({x} - {y}) <= 1e-9 * greatest(abs({x}), abs({y})))")
            checks.append(f"count(*) FILTER (WHERE NOT coalesce({same}, false))")
            checks.append(f"max(CASE WHEN {x} <> {y} THEN abs({x} - {y}) / greatest(abs({x}), abs({y})) END)")
        else:
            checks.append(f"count(*) FILTER (WHERE {x} IS DISTINCT FROM {y})")
            checks.append("NULL")
    row = con.execute(f"SELECT count(*) FILTER (WHERE a.\"{keys[0]}\" IS NULL AND b.\"{keys[0]}\" IS NOT NULL OR a.\"{keys[0]}\" IS NOT NULL AND b.\"{keys[0]}\" IS NULL), "
                      + ", ".join(checks) + f" FROM a FULL JOIN b ON {on}").fetchone() if na or nb else (0,) + (0, None) * len(ca)
    unmatched = row[0]
    diffs = {ca[i][0]: row[1 + 2 * i] for i in range(len(ca)) if row[1 + 2 * i]}
    worst = max([v for v in row[2::2] if v is not None], default=0.0)
    ok = na == nb and not diffs
    print(f"{table}: {na} / {nb} rows, differing values {diffs or 0}, worst float relative difference {worst:.1e}")
    bad += not ok
print("EQUAL" if bad == 0 else f"DIFFERENT: {bad} tables")
sys.exit(1 if bad else 0)
