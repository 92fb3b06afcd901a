//! Delta Lake output (`--output-format delta`, `format = "delta"` per
//! output): the tables custval writes are read back by an independent
//! reader, the `deltalake` Python package (with pyarrow), installed by
//! `scripts/test` into the tools folder like moto. The reader also replays
//! the Delta log's JSON commits itself (add/remove actions) and reads the
//! live Parquet files with pyarrow, so the log is checked without delta-rs.

use std::path::Path;

use crate::common::{data, nightly_cdnow, read_json, run_job, sql_on_table, Cmd, TABLES};

/// The reader's Python, installed by `scripts/test` (`deltalake` and
/// `pyarrow`, pinned there).
fn python() -> String {
    std::env::var("CUSTVAL_TEST_DELTA_PYTHON").unwrap_or_else(|_| {
        panic!("CUSTVAL_TEST_DELTA_PYTHON is not set: run scripts/test, which installs the deltalake Python package into the tools folder and sets it")
    })
}

/// For each table folder given, what the independent reader sees, as one
/// JSON object per table: the partition columns, the commit history (oldest
/// first: version, operation, mode, predicate, custval run id), rows per
/// as_of through deltalake and through the hand-replayed log, and each
/// as_of partition written to `<dump>/<table>/<as_of>.parquet` (without the
/// as_of column) for the row-by-row comparison.
const READER: &str = r#"
import json, os, sys
from urllib.parse import unquote
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

dump = sys.argv[1]
options = json.loads(sys.argv[2]) or None
out = {}
for root in sys.argv[3:]:
    name = root.rstrip("/").rsplit("/", 1)[-1]
    dt = DeltaTable(root, storage_options=options)
    history = []
    for h in sorted(dt.history(), key=lambda h: h["version"]):
        params = h.get("operationParameters", {})
        history.append({
            "version": h["version"],
            "operation": h.get("operation"),
            "mode": params.get("mode"),
            "predicate": params.get("predicate"),
            "run_id": h.get("custval.run_id"),
        })
    table = dt.to_pyarrow_table()
    rows = {}
    os.makedirs(os.path.join(dump, name), exist_ok=True)
    for day in sorted(set(str(d) for d in table.column("as_of").to_pylist())):
        part = table.filter(pc.equal(pc.cast(table.column("as_of"), "string"), day))
        rows[day] = part.num_rows
        pq.write_table(part.drop_columns(["as_of"]), os.path.join(dump, name, day + ".parquet"))
    out[name] = {
        "partition_columns": dt.metadata().partition_columns,
        "history": history,
        "rows": rows,
    }
    if options:
        continue
    # On a local folder, the log replayed by hand: the files live after the
    # last commit.
    log = os.path.join(root, "_delta_log")
    live = {}
    commits = sorted(f for f in os.listdir(log) if f.endswith(".json"))
    for c in commits:
        for line in open(os.path.join(log, c)):
            action = json.loads(line)
            if "add" in action:
                live[unquote(action["add"]["path"])] = action["add"]["partitionValues"]["as_of"]
            if "remove" in action:
                live.pop(unquote(action["remove"]["path"]), None)
    log_rows = {}
    for path, day in live.items():
        n = pq.read_metadata(os.path.join(root, path)).num_rows
        log_rows[day] = log_rows.get(day, 0) + n
    out[name]["log_files"] = len(commits)
    out[name]["log_rows"] = log_rows
print(json.dumps(out))
# pyarrow's S3 client can abort at interpreter exit ("terminate called
# without an active exception") after all the work is done: leave at once.
sys.stdout.flush()
os._exit(0)
"#;

/// Run the reader on `tables` below the local folder `out`; its JSON,
/// keyed by table.
fn read_back(out: &Path, dump: &Path, tables: &[&str]) -> serde_json::Value {
    let roots: Vec<String> = tables
        .iter()
        .map(|t| out.join(t).display().to_string())
        .collect();
    read_back_with(&roots, dump, &serde_json::Value::Null)
}

/// Run the reader on the Delta tables at `roots` (folders or URLs) with
/// deltalake's `storage_options` (null for local folders: the log is then
/// also replayed by hand); its JSON, keyed by table.
pub fn read_back_with(
    roots: &[String],
    dump: &Path,
    options: &serde_json::Value,
) -> serde_json::Value {
    let mut cmd = Cmd::new(python());
    cmd.args(["-c", READER]).arg(dump).arg(options.to_string());
    cmd.args(roots);
    serde_json::from_str(&cmd.stdout()).expect("the reader prints JSON")
}

/// All rows of a Parquet file or partition folder as sorted CSV lines,
/// formatted by custval's `sql` (the same formatting for both sides).
fn lines(url: &str) -> Vec<String> {
    let mut l: Vec<String> = sql_on_table(&[], url, "csv", "SELECT * FROM t")
        .lines()
        .map(String::from)
        .collect();
    l.sort();
    l
}

/// Written with `--output-format delta`, every table reads back in
/// `deltalake` with the same rows as the Parquet output of the same run
/// (row for row, as sorted CSV lines: texts exact, numbers to 1e-9 relative), partitioned by as_of; a
/// re-run of a date replaces its partition (no duplicates) and each run
/// is one Delta commit per table, naming its run; the next date's
/// `previous_tier` is read from the Delta table.
#[test]
fn delta_tables_read_back_in_python_and_reruns_replace() {
    let tmp = tempfile::tempdir().unwrap();
    let (parquet, delta, dump) = (
        tmp.path().join("parquet"),
        tmp.path().join("delta"),
        tmp.path().join("dump"),
    );
    nightly_cdnow(&parquet, "1997-09-30").ok();
    for day in ["1997-09-30", "1997-09-30", "1997-12-31"] {
        nightly_cdnow(&delta, day)
            .args(["--output-format", "delta"])
            .ok();
    }
    let seen = read_back(&delta, &dump, TABLES);
    for table in TABLES {
        let t = &seen[*table];
        assert_eq!(
            t["partition_columns"],
            serde_json::json!(["as_of"]),
            "{table}"
        );
        // The Parquet output's manifest counts the rows of the same date.
        let m = read_json(&parquet.join(format!("{table}/as_of=1997-09-30/_manifest.json")));
        let want = m["rows"].as_u64().unwrap();
        // An empty partition has no file, so no as_of value to read: 0 rows.
        let rows = |key: &str, day: &str| t[key].get(day).map_or(Some(0), |n| n.as_u64());
        assert_eq!(
            rows("rows", "1997-09-30"),
            Some(want),
            "{table}: rows after the re-run"
        );
        assert_eq!(
            rows("log_rows", "1997-09-30"),
            Some(want),
            "{table}: by the replayed log"
        );
        // Three runs: three commits, each an overwrite of its date only.
        let history = t["history"].as_array().unwrap();
        assert_eq!(t["log_files"], 3, "{table}: one commit per run");
        assert_eq!(history.len(), 3, "{table}: {history:?}");
        let mut run_ids = std::collections::BTreeSet::new();
        for (h, day) in history
            .iter()
            .zip(["1997-09-30", "1997-09-30", "1997-12-31"])
        {
            assert_eq!(h["operation"], "WRITE", "{table}: {h}");
            assert_eq!(h["mode"], "Overwrite", "{table}: {h}");
            let predicate = h["predicate"].as_str().unwrap_or_default();
            assert!(
                predicate.contains("as_of") && predicate.contains(day),
                "{table}: {h}"
            );
            run_ids.insert(h["run_id"].as_str().unwrap().to_string());
        }
        assert_eq!(run_ids.len(), 3, "{table}: each commit names its own run");
        // Row for row the same as the Parquet output of another run of the
        // same date: texts and counts exactly, sums to 1e-9 relative (their
        // last bits follow the parallel summation order, which differs
        // between any two runs).
        if want == 0 {
            continue;
        }
        let from_delta = dump.join(format!("{table}/1997-09-30.parquet"));
        let from_parquet = parquet.join(format!("{table}/as_of=1997-09-30/"));
        crate::common::assert_same_rows_within(
            table,
            &lines(&from_delta.display().to_string()),
            &lines(&from_parquet.display().to_string()),
            1e-9,
            1e-9,
        );
    }
    // The 1997-12-31 run read its previous tiers from the Delta table: as
    // many customers with a previous tier as the Parquet output gives
    // (2357, tests/integration/publish.rs).
    let tiers = dump.join("customer_tiers/1997-12-31.parquet");
    let n = sql_on_table(
        &[],
        &tiers.display().to_string(),
        "csv",
        "SELECT count(previous_tier) AS n FROM t",
    );
    assert_eq!(n, "n\n2357\n");
}

/// A job whose outputs say `format = "delta"`, with a last step that fails
/// at run time: the failed run leaves every Delta table at its previous
/// version (same commits, same rows), and the run lists no table.
#[test]
fn a_failing_run_leaves_every_delta_table_at_its_previous_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, dump) = (tmp.path().join("out"), tmp.path().join("dump"));
    let text = std::fs::read_to_string(format!("{}/jobs/nightly.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace("\"../sql/", "\"builtin:");
    let delta: String = text
        .lines()
        .map(|l| match l.starts_with("from = ") {
            true => format!("{l}\nformat = \"delta\"\n"),
            false => format!("{l}\n"),
        })
        .collect();
    assert_eq!(delta.matches("format = \"delta\"").count(), TABLES.len());
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, &delta).unwrap();
    // Divides by zero once the other steps are computed, before publishing.
    std::fs::write(
        tmp.path().join("boom.sql"),
        "SELECT count(*) / 0 AS boom FROM customer_tiers",
    )
    .unwrap();
    let bad = tmp.path().join("bad.toml");
    let boom = "\n[[steps]]\nname = \"boom\"\nsql = \"boom.sql\"\nmaterialize = true\n";
    std::fs::write(&bad, format!("{delta}{boom}")).unwrap();
    let input = format!("transactions={}", data("cdnow_sample.csv"));
    let run = |job: &Path, day: &str| run_job(job, &out, day, &input);
    run(&good, "1997-09-30").ok();
    let before = read_back(&out, &dump.join("before"), TABLES);
    let failed = run(&bad, "1997-12-31").fails();
    assert!(failed.report().contains("boom"), "{}", failed.report());
    let after = read_back(&out, &dump.join("after"), TABLES);
    assert_eq!(before, after, "a failed run changes no Delta table");
    for table in TABLES {
        assert_eq!(after[*table]["log_files"], 1, "{table}");
        assert!(after[*table]["rows"].get("1997-12-31").is_none(), "{table}");
    }
}
