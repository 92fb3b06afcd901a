//! Column docs end to end: the Parquet field metadata of every published
//! file, the manifests, `custval describe` and the README's table reference
//! say the same description and unit for every column.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{nightly_cdnow, read_json, Cmd, TABLES};

const AS_OF: &str = "1997-09-30";

/// column -> (unit, description)
type Docs = BTreeMap<String, (String, String)>;

/// The README's rows for `table`: `| `col` | unit | description |` lines
/// under its `### table:` heading.
fn readme_docs(table: &str) -> Docs {
    let text = std::fs::read_to_string("README.md").unwrap();
    let start = text
        .find(&format!("\n### {table}: "))
        .unwrap_or_else(|| panic!("README.md has no section for {table}"));
    let mut docs = Docs::new();
    for line in text[start + 1..].lines().skip(1) {
        if line.starts_with("### ") || line.starts_with("<!--") {
            break;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        if let [name, unit, description] = cells[..] {
            if let Some(name) = name.strip_prefix("| `").and_then(|n| n.strip_suffix('`')) {
                let description = description.trim_end_matches(" |");
                docs.insert(name.into(), (unit.into(), description.into()));
            }
        }
    }
    docs
}

/// The field metadata of every Parquet file the partition's manifest lists;
/// all files must agree.
fn parquet_docs(part: &Path) -> Docs {
    let manifest = read_json(&part.join("_manifest.json"));
    let mut seen: Option<Docs> = None;
    for f in manifest["files"].as_array().unwrap() {
        let file = std::fs::File::open(part.join(f["path"].as_str().unwrap())).unwrap();
        let schema = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .schema()
            .clone();
        let docs: Docs = schema
            .fields()
            .iter()
            .map(|f| {
                let m = f.metadata();
                let get = |k: &str| {
                    m.get(k)
                        .cloned()
                        .unwrap_or_else(|| panic!("{part:?}: {} has no {k}", f.name()))
                };
                (f.name().clone(), (get("unit"), get("description")))
            })
            .collect();
        if let Some(s) = &seen {
            assert_eq!(s, &docs, "{part:?}: files disagree");
        }
        seen = Some(docs);
    }
    seen.unwrap()
}

/// Every column of every table of the CDNOW run carries a description and
/// unit in each Parquet file and in the manifest; for every table they equal
/// the README's reference; and `custval describe customer_tiers` prints the
/// same three things per column.
#[test]
fn parquet_metadata_manifest_describe_and_readme_agree() {
    let tmp = tempfile::tempdir().unwrap();
    nightly_cdnow(tmp.path(), AS_OF).ok();
    for table in TABLES {
        let part = tmp.path().join(table).join(format!("as_of={AS_OF}"));
        let files = parquet_docs(&part);
        let manifest = read_json(&part.join("_manifest.json"));
        let from_manifest: Docs = manifest["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |k: &str| {
                    c[k].as_str()
                        .unwrap_or_else(|| panic!("{table}: {c} has no {k}"))
                        .to_string()
                };
                (s("name"), (s("unit"), s("description")))
            })
            .collect();
        assert_eq!(files, from_manifest, "{table}: Parquet vs manifest");
        assert_eq!(files, readme_docs(table), "{table}: Parquet vs README.md");
    }
    let out = Cmd::custval().args(["describe", "customer_tiers"]).stdout();
    let readme = readme_docs("customer_tiers");
    let mut described = Docs::new();
    for line in out.lines().skip(1) {
        let mut words = line.split_whitespace();
        let (name, unit) = (words.next().unwrap(), words.next().unwrap());
        let description = words.collect::<Vec<_>>().join(" ");
        described.insert(name.into(), (unit.into(), description));
    }
    assert_eq!(
        described, readme,
        "custval describe customer_tiers vs README.md"
    );
    // 29 since clv_low and clv_high (issue 15), 30 since wallet_source, 31
    // since wallet_calibration (issue 20).
    assert_eq!(described.len(), 31, "customer_tiers has 31 columns:\n{out}");
}

/// The other shipped jobs' tables are documented too: every column of
/// every file the CLV and subscription jobs publish has a description and
/// unit, equal to the README's.
#[test]
fn the_clv_and_subscription_jobs_tables_are_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = [
        (
            "jobs/clv.toml",
            "transactions=tests/data/cdnow_sample.csv",
            AS_OF,
            &["customer_clv", "model_fit"],
        ),
        (
            "jobs/subscriptions.toml",
            "subscriptions=tests/data/subscriptions_regular.csv",
            "2024-12-31",
            &["subscription_survival", "subscription_model_fit"],
        ),
    ];
    for (job, input, as_of, tables) in runs {
        let out = tmp.path().join(job.replace('/', "_"));
        Cmd::custval()
            .args(["-q", "run", job, "--input", input, "--as-of", as_of])
            .args(["--output", out.to_str().unwrap()])
            .ok();
        for table in tables {
            let docs = parquet_docs(&out.join(table).join(format!("as_of={as_of}")));
            assert_eq!(
                docs,
                readme_docs(table),
                "{job} {table}: Parquet vs README.md"
            );
        }
    }
}

/// An unknown table is an argument error (exit 2) naming the known ones.
#[test]
fn describe_of_an_unknown_table_exits_2() {
    let run = Cmd::custval().args(["describe", "tiers"]).code(2);
    assert!(run.report().contains("customer_tiers"), "{}", run.report());
}
