//! A shop's own export, run with a job file alone: an Online-Retail-shaped
//! CSV generated here (mixed-case headers, US dates, returns, cancelled
//! invoices `C…`, rows without a customer, ids written as floats by pandas,
//! an internal country filtered out, a description with a comma and one
//! with a quoted newline), mapped with expressions, a timestamp format and
//! a filter. The published totals are checked against an independent
//! computation over the generated rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{files_under, read_json, read_table, Cmd};

const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";
const AS_OF: &str = "2011-12-09";
/// The export's file name: gzip-compressed, as shops send them
/// ([`write_export`] gzips a `.gz` name; the reader decompresses by extension).
const EXPORT: &str = "online_retail.csv.gz";
/// The US format of the export's dates: `12/1/2010 8:26`.
const US_FORMAT: &str = "%m/%d/%Y %H:%M";

/// One generated line of the export, as its fields are written.
#[derive(Debug, Clone)]
struct Row {
    invoice: String,
    stock_code: String,
    description: String,
    quantity: i64,
    at: NaiveDateTime,
    unit_price: &'static str,
    /// Empty for rows without a customer; `17850` or `17850.0`.
    customer: String,
    country: &'static str,
}

impl Row {
    fn csv_line(&self) -> String {
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        // Month and day without padding, as in the Online Retail export.
        let date = self.at.format("%-m/%-d/%Y %-H:%M").to_string();
        [
            quote(&self.invoice),
            quote(&self.stock_code),
            quote(&self.description),
            self.quantity.to_string(),
            date,
            self.unit_price.to_string(),
            quote(&self.customer),
            quote(self.country),
        ]
        .join(",")
    }
}

const PRICES: &[&str] = &[
    "2.55", "3.39", "0.85", "4.95", "1.25", "7.65", "12.75", "0.42",
];
const DESCRIPTIONS: &[&str] = &[
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "SET 2 TEA TOWELS, I LOVE LONDON",
    "HAND WARMER\nUNION JACK",
    "KNITTED \"UNION FLAG\" HOT WATER BOTTLE",
    "RED WOOLLY HOTTIE WHITE HEART.",
];
const COUNTRIES: &[&str] = &["United Kingdom", "France", "Germany", "EIRE"];

/// One line of an invoice, with a random stock code, description and price.
fn line(
    rng: &mut StdRng,
    invoice: &str,
    at: NaiveDateTime,
    customer: &str,
    country: &'static str,
    quantity: i64,
) -> Row {
    let suffix = if rng.random_bool(0.2) { "A" } else { "" };
    Row {
        invoice: invoice.to_string(),
        stock_code: format!("{}{suffix}", rng.random_range(20000..23000)),
        description: DESCRIPTIONS[rng.random_range(0..DESCRIPTIONS.len())].to_string(),
        quantity,
        at,
        unit_price: PRICES[rng.random_range(0..PRICES.len())],
        customer: customer.to_string(),
        country,
    }
}

/// Several hundred customers over about a year: invoices of 1 to 4 lines
/// (some with two products at the same amount, some with a line written
/// twice),
/// some cancelled later (`C` + the invoice, negative quantities), some
/// lines returned in the invoice itself, rows without a customer, ids
/// written as floats for a third of the customers, and `Internal` rows.
fn generate(seed: u64, customers: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = NaiveDate::from_ymd_opt(2010, 12, 1)
        .unwrap()
        .and_hms_opt(8, 0, 0)
        .unwrap();
    let mut invoice_no = 536_365u32;
    let mut rows = Vec::new();
    for c in 0..customers {
        let id = 12_346 + c as u32;
        let customer = if c % 3 == 0 {
            format!("{id}.0")
        } else {
            id.to_string()
        };
        let country = COUNTRIES[c % COUNTRIES.len()];
        for _ in 0..rng.random_range(1..=8) {
            let at = start
                + Duration::days(rng.random_range(0..374))
                + Duration::minutes(rng.random_range(0..600));
            let invoice = invoice_no.to_string();
            invoice_no += 1;
            let mut lines = Vec::new();
            for _ in 0..rng.random_range(1..=4) {
                let qty = if rng.random_bool(0.05) {
                    -rng.random_range(1..4)
                } else {
                    rng.random_range(1..25)
                };
                lines.push(line(&mut rng, &invoice, at, &customer, country, qty));
            }
            if rng.random_bool(0.15) {
                // Another product at the same quantity and price: the same
                // amount on the same invoice, a line of its own.
                let mut other = lines[0].clone();
                other.stock_code = format!("{}B", other.stock_code);
                lines.push(other);
            }
            if rng.random_bool(0.05) {
                // An export duplicate: the first line written twice.
                lines.push(lines[0].clone());
            }
            if rng.random_bool(0.1) {
                // Cancelled later: the first line back, as a C invoice.
                let later = at + Duration::days(rng.random_range(0..20));
                let mut back = lines[0].clone();
                back.invoice = format!("C{invoice}");
                back.quantity = -lines[0].quantity.abs();
                back.at = later;
                lines.push(back);
            }
            rows.extend(lines);
        }
    }
    // Rows without a customer, and the shop's own internal orders.
    for i in 0..40 {
        let at = start + Duration::days(i * 9) + Duration::minutes(17);
        rows.push(line(
            &mut rng,
            &format!("{}", 600_000 + i),
            at,
            "",
            "United Kingdom",
            3,
        ));
    }
    for i in 0..25 {
        let at = start + Duration::days(i * 13) + Duration::hours(3);
        let who = if i % 2 == 0 {
            "99001".to_string()
        } else {
            "12346".to_string()
        };
        rows.push(line(
            &mut rng,
            &format!("{}", 700_000 + i),
            at,
            &who,
            "Internal",
            500,
        ));
    }
    // The whole export in time order, as the shop writes it.
    rows.sort_by(|a, b| a.at.cmp(&b.at).then(a.invoice.cmp(&b.invoice)));
    rows
}

/// Write the export, gzip-compressed when the name ends in `.gz`.
fn write_export(path: &Path, rows: &[Row]) {
    let mut text = String::from(HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(&r.csv_line());
        text.push('\n');
    }
    if path.extension().is_some_and(|e| e == "gz") {
        let file = std::fs::File::create(path).unwrap();
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

/// What the published `customer_tiers` must add up to.
#[derive(Debug)]
struct Expected {
    customers: usize,
    orders: i64,
    revenue: f64,
    rows_read: usize,
    rows_filtered: usize,
    rows_rejected: usize,
}

/// The SPEC's rules over the generated rows, computed here without
/// custval: `Internal` rows are filtered (neither read nor rejected); a row
/// without a customer is rejected ("missing customer_id"); `17850.0` is
/// customer `17850`; amount = Quantity x UnitPrice; the day is the UTC day
/// of the (naive) timestamp; rows after the as-of date are left out; a row
/// repeating an earlier row exactly (every field as written) counts once,
/// while lines differing only in their product are two lines; per
/// customer and day the amounts are netted; a day is a purchase day when
/// its net is >= 0; a customer is in `customer_tiers` with at least one
/// purchase day; `revenue` sums every usable row, `orders` counts the
/// customer's distinct invoices with a line of amount >= 0 (a cancellation
/// invoice `C…`, all negative, is no order).
fn expected(rows: &[Row]) -> Expected {
    let as_of = NaiveDate::parse_from_str(AS_OF, "%Y-%m-%d").unwrap();
    let mut e = Expected {
        customers: 0,
        orders: 0,
        revenue: 0.0,
        rows_read: 0,
        rows_filtered: 0,
        rows_rejected: 0,
    };
    let mut seen = HashSet::new();
    // customer -> day -> net amount; customer -> invoices with a purchase line
    let mut days: BTreeMap<String, BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    let mut invoices: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for r in rows {
        if r.country == "Internal" {
            e.rows_filtered += 1;
            continue;
        }
        e.rows_read += 1;
        if r.customer.is_empty() {
            e.rows_rejected += 1;
            continue;
        }
        let day = r.at.date();
        if day > as_of {
            continue;
        }
        let customer = r.customer.trim_end_matches(".0").to_string();
        let amount = r.quantity as f64 * r.unit_price.parse::<f64>().unwrap();
        if !seen.insert(r.csv_line()) {
            continue;
        }
        if amount >= 0.0 {
            invoices
                .entry(customer.clone())
                .or_default()
                .insert(r.invoice.clone());
        }
        *days.entry(customer).or_default().entry(day).or_default() += amount;
    }
    for (customer, per_day) in &days {
        if per_day.values().any(|net| *net >= 0.0) {
            e.customers += 1;
            e.orders += invoices.get(customer).map_or(0, |i| i.len() as i64);
            e.revenue += per_day.values().sum::<f64>();
        }
    }
    e
}

/// The repository's nightly job with the export's input section: columns
/// mapped by name and expression, the US timestamp format (unless
/// `format` is false), the filter; SQL paths made absolute.
fn job_file(dir: &Path, format: bool) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("jobs/nightly.toml")).unwrap();
    let mut job: toml::Table = text.parse().unwrap();
    let sql = repo.join("sql");
    for list in ["steps", "gates"] {
        for s in job[list].as_array_mut().unwrap() {
            let file = s["sql"]
                .as_str()
                .unwrap()
                .replace("../sql", &sql.display().to_string());
            s["sql"] = file.into();
        }
    }
    let mut input = toml::Table::new();
    input.insert("kind".into(), "transactions".into());
    let columns: toml::Table = [
        ("customer_id", "CustomerID"),
        ("order_ts", "InvoiceDate"),
        ("amount", "Quantity * UnitPrice"),
        ("order_id", "invoiceno"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), toml::Value::from(v)))
    .collect();
    input.insert("columns".into(), columns.into());
    if format {
        input.insert(
            "timestamp_format".into(),
            vec![US_FORMAT, "%Y-%m-%d %H:%M:%S"].into(),
        );
    }
    input.insert("where".into(), "Country <> 'Internal'".into());
    job["inputs"]["transactions"] = input.into();
    // Real exports lose customers on a quarter of their rows; random
    // purchases are not BG/NBD data, so a fit may stop short.
    job["params"]["max_rejected_fraction"] = 0.3.into();
    job["params"]["allow_unconverged"] = true.into();
    let path = dir.join("retail.toml");
    std::fs::write(&path, toml::to_string(&job).unwrap()).unwrap();
    path
}

fn run(job: &Path, export: &Path, out: &Path, report: &Path) -> Cmd {
    let mut c = Cmd::custval();
    c.args(["-q", "run"])
        .arg(job)
        .arg("--input")
        .arg(format!("transactions={}", export.display()))
        .args(["--as-of", AS_OF, "--output"])
        .arg(out)
        .arg("--report")
        .arg(report);
    c
}

/// The export runs with the job file alone, and `customer_tiers` adds up
/// to the independent computation: customers exactly, orders exactly,
/// revenue within 1e-9 relative (sums in another order).
#[test]
fn an_online_retail_export_runs_with_a_job_file_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = generate(14, 400);
    let want = expected(&rows);
    assert!(
        want.customers >= 350 && want.rows_rejected == 40 && want.rows_filtered == 25,
        "{want:?}"
    );
    let export = tmp.path().join(EXPORT);
    write_export(&export, &rows);
    let job = job_file(tmp.path(), true);
    let out = tmp.path().join("out");
    let report = tmp.path().join("report.json");
    Cmd::custval()
        .args(["-q", "check"])
        .arg(&job)
        .arg("--input")
        .arg(format!("transactions={}", export.display()))
        .ok();
    run(&job, &export, &out, &report).ok();

    let got = &read_table(
        &out,
        "customer_tiers",
        AS_OF,
        "SELECT count(*) AS customers, sum(orders) AS orders, sum(revenue) AS revenue FROM t",
    )[0];
    assert_eq!(
        got["customers"].parse::<usize>().unwrap(),
        want.customers,
        "{got:?} {want:?}"
    );
    assert_eq!(
        got["orders"].parse::<i64>().unwrap(),
        want.orders,
        "{got:?} {want:?}"
    );
    let revenue: f64 = got["revenue"].parse().unwrap();
    assert!(
        (revenue - want.revenue).abs() <= 1e-9 * want.revenue.abs(),
        "revenue {revenue} against {}",
        want.revenue
    );
    let q = &read_json(&report)["quality"];
    assert_eq!(q["rows_read"], want.rows_read as u64, "{q}");
    assert_eq!(q["rows_filtered"], want.rows_filtered as u64, "{q}");
    assert_eq!(q["rows_rejected"], want.rows_rejected as u64, "{q}");
    let reasons = read_table(
        &out,
        "rejected_rows",
        AS_OF,
        "SELECT reason, count(*) AS n FROM t GROUP BY reason",
    );
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["reason"], "missing customer_id");
    // Float-written ids are the integers: no id with a fraction is published.
    let ids = read_table(&out, "customer_tiers", AS_OF, "SELECT count(*) AS n FROM t WHERE strpos(CAST(customer_id AS VARCHAR), '.') > 0 OR CAST(customer_id AS VARCHAR) = '99001'");
    assert_eq!(
        ids[0]["n"], "0",
        "ids with a fraction, or the internal customer, were published"
    );
}

/// The same export without its timestamp format: every US date is
/// unparseable, the rejected-rows gate stops the run with exit 3 and
/// nothing is published.
#[test]
fn the_export_without_its_timestamp_format_fails_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join(EXPORT);
    write_export(&export, &generate(15, 40));
    let job = job_file(tmp.path(), false);
    let out = tmp.path().join("out");
    run(&job, &export, &out, &tmp.path().join("report.json")).code(3);
    let published: Vec<_> = files_under(&out)
        .into_iter()
        .filter(|p| p.ends_with("_manifest.json"))
        .collect();
    assert!(
        published.is_empty(),
        "published after a failed gate: {published:?}"
    );
}

/// A gzip export is written like the plain one (the reader's gzip support
/// comes with the CSV options): here only the writer is checked, by
/// reading the file back.
#[test]
fn the_export_writer_gzips_by_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = generate(16, 5);
    let gz = tmp.path().join("online_retail.csv.gz");
    write_export(&gz, &rows);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut text,
    )
    .unwrap();
    assert!(text.starts_with(HEADER));
    // Lines of the rows, counting the quoted newlines some descriptions hold.
    let newlines: usize = rows
        .iter()
        .map(|r| 1 + r.description.matches('\n').count())
        .sum();
    assert_eq!(text.matches('\n').count(), 1 + newlines);
}

/// `check` validates the mapping against the real columns: an unknown raw
/// name exits 2 naming the input, the canonical column, the name and the
/// columns the export has; an expression of the wrong type exits 2.
#[test]
fn check_names_unknown_columns_and_type_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join(EXPORT);
    write_export(&export, &generate(17, 10));
    let good = std::fs::read_to_string(job_file(tmp.path(), true)).unwrap();
    let check = |text: String| {
        let job = tmp.path().join("broken.toml");
        std::fs::write(&job, text).unwrap();
        let mut c = Cmd::custval();
        c.args(["-q", "check"])
            .arg(&job)
            .arg("--input")
            .arg(format!("transactions={}", export.display()));
        c.code(2).stderr
    };
    let err = check(good.replace("Quantity * UnitPrice", "Qty * UnitPrice"));
    for part in [
        "transactions",
        "amount",
        "\"Qty\"",
        "InvoiceNo, StockCode, Description, Quantity",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
    let err = check(good.replace("Country <> 'Internal'", "Region <> 'Internal'"));
    assert!(err.contains("where") && err.contains("\"Region\""), "{err}");
    let err = check(good.replace("order_ts = \"InvoiceDate\"", "order_ts = \"Quantity * 2\""));
    assert!(
        err.contains("order_ts") && err.contains("Quantity * 2"),
        "{err}"
    );
}

/// Checked by the test itself: the generator's rows hold every feature the
/// export test claims (so it cannot pass on an export without them).
#[test]
fn the_generated_export_has_every_feature() {
    let rows = generate(14, 400);
    let has = |f: &dyn Fn(&Row) -> bool| rows.iter().any(f);
    assert!(
        has(&|r| r.invoice.starts_with('C') && r.quantity < 0),
        "cancelled invoices"
    );
    assert!(
        has(&|r| !r.invoice.starts_with('C') && r.quantity < 0),
        "returns"
    );
    assert!(has(&|r| r.customer.is_empty()), "rows without a customer");
    assert!(
        has(&|r| r.customer.ends_with(".0")),
        "ids written as floats"
    );
    assert!(has(&|r| r.description.contains(',')) && has(&|r| r.description.contains('\n')));
    assert!(
        has(&|r| r.at.format("%-m/%-d").to_string().len() < 5),
        "unpadded US dates"
    );
    let customers: HashMap<&str, usize> = rows.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.customer.as_str()).or_default() += 1;
        m
    });
    assert!(customers.len() > 300);
}
