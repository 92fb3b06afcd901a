//! Incremental nights (`custval run --incremental`) end to end: four nights
//! of the nightly job on a folder of CSV files that grows by one file a
//! night, compared table by table with a full run of the same job, data and
//! date (the reference: every row read), and the nights that must not fold.
//!
//! The data are generated here (a fixed linear congruential sequence): 120
//! customers over four months; later nights bring new days, rows up to five
//! days late (within the 7-day lookback), exact repeats of rows sent on an
//! earlier night, rows after the as-of date, returns on the order's day and
//! refunds on later days, a rejected row and a row without a day. Amounts
//! are multiples of 0.25, so every sum is exact in any order: the expected
//! tables are the full run's, within 1e-9 relative (the harness's
//! tolerance for sums added in another order; here they are equal).

use std::fmt::Write;
use std::path::Path;

use chrono::{Duration, NaiveDate};

use crate::common::{assert_same_rows_within, files_under, read_table, table_lines, Cmd, TABLES};

/// A deterministic pseudo-random sequence (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// An integer in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The lines (CSV rows) of the customers' orders on `d`: one order of one
/// or two lines for about one customer in eight, now and then a return
/// line within the order, or a refund without an order id two days later.
fn orders_on(rng: &mut Lcg, d: NaiveDate) -> Vec<String> {
    let mut rows = Vec::new();
    for c in 1..=120u64 {
        if rng.below(8) != 0 {
            continue;
        }
        let order = format!("o{c}-{}", d.format("%Y%m%d"));
        let lines = 1 + rng.below(2);
        for l in 0..lines {
            let amount = 0.25 * (4 + rng.below(400)) as f64;
            let cat = ["books", "games", "music"][rng.below(3) as usize];
            let ts = format!("{}T{:02}:{:02}:00", day(d), 8 + l, rng.below(60));
            rows.push(format!("c{c:03},{ts},{amount},{order},{cat}"));
        }
        match rng.below(10) {
            // A return line of the same order on its day.
            0 => rows.push(format!("c{c:03},{}T20:00:00,-5.25,{order},books", day(d))),
            // A refund without an order id two days later (no order).
            1 => rows.push(format!(
                "c{c:03},{}T09:30:00,-3.5,,games",
                day(d + Duration::days(2))
            )),
            _ => {}
        }
    }
    rows
}

const HEADER: &str = "customer_id,order_ts,amount,order_id,category";

/// The night (index into `nights`) a row of day `d` arrives on: the first
/// whose as-of date is on or after its day, or for a late row (`late`) on
/// or after its day plus three; `None` after the last night.
fn arrival(nights: &[NaiveDate], d: NaiveDate, late: bool) -> Option<usize> {
    let due = if late { d + Duration::days(3) } else { d };
    nights.iter().position(|&n| n >= due)
}

/// Writes one file per night into `dir` (`night1.csv`, ...): the rows that
/// arrive that night (a row in four arrives three days late: within the
/// 7-day lookback of the night before, as its day is after that night's
/// as-of less three), then on later nights exact repeats of the last ten
/// rows the night before sent and a row dated the day after the as-of
/// date, and on the second night a rejected row and a row without a day.
fn write_nights(dir: &Path, start: NaiveDate, nights: &[NaiveDate]) {
    let mut rng = Lcg(17);
    let mut files: Vec<Vec<String>> = vec![Vec::new(); nights.len()];
    let mut d = start;
    while d <= *nights.last().unwrap() {
        for (i, row) in orders_on(&mut rng, d).into_iter().enumerate() {
            // "cNNN," then the row's own day (a refund's is later).
            let row_day = NaiveDate::parse_from_str(&row[5..15], "%Y-%m-%d").unwrap();
            if let Some(k) = arrival(nights, row_day, i % 4 == 0) {
                files[k].push(row);
            }
        }
        d += Duration::days(1);
    }
    for k in 0..nights.len() {
        let mut rows = files[k].clone();
        if k > 0 {
            let before = &files[k - 1];
            rows.extend(before[before.len() - 10..].iter().cloned());
            let next = day(nights[k] + Duration::days(1));
            rows.push(format!("c001,{next}T10:00:00,7.5,future-{k},books"));
        }
        if k == 1 {
            rows.push(format!("c002,{}T10:00:00,abc,bad-1,books", day(nights[k])));
            rows.push("c003,,12.5,noday-1,books".to_string());
        }
        let mut text = format!("{HEADER}\n");
        for r in &rows {
            let _ = writeln!(text, "{r}");
        }
        std::fs::write(dir.join(format!("night{}.csv", k + 1)), text).unwrap();
    }
}

/// The nightly job on `input` as of `as_of` into `out`, with `extra`
/// arguments; the small fixture's fits may stop short of convergence, and
/// the late rows make no gate fail.
fn night(out: &Path, input: &Path, as_of: NaiveDate, extra: &[&str]) -> Cmd {
    let mut c = Cmd::custval();
    c.args([
        "run",
        "jobs/nightly.toml",
        "--as-of",
        &day(as_of),
        "--output",
    ])
    .arg(out)
    .arg("--input")
    .arg(format!("transactions={}/", input.display()))
    .args(["--set", "allow_unconverged=true"])
    .args(extra);
    c
}

fn rows(out: &Path, table: &str, as_of: NaiveDate) -> Vec<String> {
    table_lines(&[], &format!("{}/", out.display()), table, &day(as_of))
}

/// Night 1 is full (no state yet) and publishes customer_state; nights 2
/// to 4 fold new days, late rows within the lookback and repeats into it.
/// Each night, every table the job publishes equals the full run's.
#[test]
fn incremental_nights_publish_the_full_runs_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let nights = four_nights();
    let staging = tmp.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    write_nights(
        &staging,
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        &nights,
    );
    let (inc, _) = run_both(tmp.path(), &staging, &nights);
    // The rows read: the late, repeated, rejected and dayless rows were in
    // the data the tables were compared on.
    let q = rows(&inc, "rejected_rows", nights[3]);
    assert!(q.iter().any(|l| l.contains("abc")), "{q:?}");
    assert!(!files_under(&inc.join("customer_state")).is_empty());
}

/// The as-of dates of four nights: three in a row, then one two days later.
fn four_nights() -> [NaiveDate; 4] {
    let d1 = NaiveDate::from_ymd_opt(2024, 4, 30).unwrap();
    [
        d1,
        d1 + Duration::days(1),
        d1 + Duration::days(2),
        d1 + Duration::days(4),
    ]
}

/// Copies the staged `nightK.csv` files into an input folder one night at
/// a time and runs the nightly job on it each night, incrementally into
/// `inc` and fully into `full` (the reference); asserts that night 1 is a
/// full one, the later ones incremental, and that every published table
/// equals the full run's each night (1e-9 relative: the sums are exact in
/// any order, see the module doc). Returns (inc, full).
fn run_both(
    tmp: &Path,
    staging: &Path,
    nights: &[NaiveDate],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let input = tmp.join("in");
    std::fs::create_dir(&input).unwrap();
    let (inc, full) = (tmp.join("inc"), tmp.join("full"));
    for (k, &as_of) in nights.iter().enumerate() {
        let name = format!("night{}.csv", k + 1);
        std::fs::copy(staging.join(&name), input.join(&name)).unwrap();
        let run = night(&inc, &input, as_of, &["--incremental"]).ok();
        match k {
            0 => assert!(
                run.stderr
                    .contains("a full night (no customer_state published before"),
                "{}",
                run.stderr
            ),
            _ => assert!(
                run.stderr.contains("incremental night"),
                "night {}: {}",
                k + 1,
                run.stderr
            ),
        }
        night(&full, &input, as_of, &["-q"]).ok();
        for table in TABLES {
            let (a, b) = (rows(&inc, table, as_of), rows(&full, table, as_of));
            // The header and rows; no row was rejected before night 2.
            let empty = *table == "rejected_rows" && k == 0;
            assert!(a.len() > 1 || empty, "{table}: no rows");
            assert_same_rows_within(table, &a, &b, 1e-9, 1e-9);
        }
        let state = rows(&inc, "customer_state", as_of);
        let cutoff = day(as_of - Duration::days(7));
        assert!(state.len() > 100, "{}", state.len());
        let body = state.iter().filter(|l| !l.starts_with("customer_id,"));
        let stale: Vec<&String> = body.filter(|l| !l.contains(&cutoff)).collect();
        assert!(
            stale.is_empty(),
            "night {}: not cut at {cutoff}: {stale:?}",
            k + 1
        );
        assert!(!full.join("customer_state").exists());
        // The months before the cutoff are kept beside it: January to the
        // cutoff's month (April) for the customers of the generated data.
        let months = rows(&inc, "customer_month_state", as_of);
        assert!(months.len() > 120 * 3, "{}", months.len());
    }
    (inc, full)
}

/// Rows of orders whose lines fall on both sides of a night's cutoff
/// (as_of less 7 days: 04-23, 04-24, 04-25 and 04-27 on the four nights),
/// per night file, for customers c201 to c206 (not in the generated data).
/// Hand-counted orders per customer, as a full run counts them (one per
/// order id with a purchase line, on any day; a return is no order):
/// c201 2, c202 1, c203 2, c204 1, c205 1, c206 2.
fn straddles() -> [Vec<&'static str>; 4] {
    [
        vec![
            // c201: one order on 04-20 and 04-28 (both sides of night 1's
            // cutoff, in one night's rows), and a second order.
            "c201,2024-04-20T10:00:00,10.25,s-a,books",
            "c201,2024-04-28T10:00:00,4.5,s-a,games",
            "c201,2024-04-29T11:00:00,6.0,s-a2,games",
            // c202: an order of 04-10, folded into night 1's state; a
            // late line of it comes on night 3.
            "c202,2024-04-10T10:00:00,20.0,s-b,books",
            // c203: an order of 04-15, re-sent on night 2 stamped with the
            // day it was sent (the same order, another day); another order
            // on 04-29.
            "c203,2024-04-15T10:00:00,12.5,s-c,music",
            "c203,2024-04-29T10:00:00,8.0,s-c2,music",
            // c204: an order of 04-12 whose line is returned on night 2
            // (a return of an old order: still one order).
            "c204,2024-04-12T10:00:00,30.0,s-d,books",
            // c205: an order on 04-23 and 04-26: after night 1's cutoff,
            // then across night 2's (04-24) and night 4's (04-27) reads.
            "c205,2024-04-23T10:00:00,14.0,s-e,games",
            "c205,2024-04-26T10:00:00,3.25,s-e,games",
            // c206: an order of 04-05 exchanged on night 4: a return and a
            // purchase line of the same order on 05-04; a second order.
            "c206,2024-04-05T10:00:00,40.0,s-f,music",
            "c206,2024-04-22T10:00:00,9.75,s-f2,music",
        ],
        vec![
            "c203,2024-05-01T09:00:00,12.5,s-c,music",
            "c204,2024-05-01T10:00:00,-30.0,s-d,books",
        ],
        vec!["c202,2024-05-02T10:00:00,5.5,s-b,games"],
        vec![
            "c206,2024-05-04T10:00:00,-40.0,s-f,music",
            "c206,2024-05-04T10:05:00,38.5,s-f,music",
            "c206,2024-05-03T10:00:00,1.25,s-f2,books",
        ],
    ]
}

/// An order id counts once in `orders` (customer_tiers' and the fits'
/// inputs) however its lines fall across the cutoffs of incremental
/// nights: the kinds of straddle in [`straddles`], each night against the
/// full run and the last night against the hand count.
#[test]
fn an_order_across_the_cutoff_counts_once() {
    let tmp = tempfile::tempdir().unwrap();
    let nights = four_nights();
    let staging = tmp.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    write_nights(
        &staging,
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        &nights,
    );
    for (k, extra) in straddles().iter().enumerate() {
        let file = staging.join(format!("night{}.csv", k + 1));
        let mut text = std::fs::read_to_string(&file).unwrap();
        for r in extra {
            let _ = writeln!(text, "{r}");
        }
        std::fs::write(&file, text).unwrap();
    }
    let (inc, full) = run_both(tmp.path(), &staging, &nights);
    let sql = "SELECT customer_id, orders FROM t WHERE customer_id > 'c200' ORDER BY 1";
    let last = day(nights[3]);
    let counted: Vec<(String, String)> = read_table(&inc, "customer_tiers", &last, sql)
        .into_iter()
        .map(|r| (r["customer_id"].clone(), r["orders"].clone()))
        .collect();
    let hand = [
        ("c201", "2"),
        ("c202", "1"),
        ("c203", "2"),
        ("c204", "1"),
        ("c205", "1"),
        ("c206", "2"),
    ];
    let hand: Vec<(String, String)> = hand
        .iter()
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .collect();
    assert_eq!(counted, hand);
    assert_eq!(read_table(&full, "customer_tiers", &last, sql).len(), 6);
}

/// A night is a full one, and says why, when a file the state's night read
/// has changed since (here a row of February, beyond any lookback, added
/// to it: the full night counts it, as the reference run does) and when
/// the previous state was built with other settings (another timezone),
/// and when the state has no order_state beside it.
/// `holdout_days` above `lookback_days` is refused before anything is read
/// (exit 2, naming both).
#[test]
fn an_unsafe_night_is_a_full_one_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, staging) = (tmp.path().join("in"), tmp.path().join("staging"));
    std::fs::create_dir(&input).unwrap();
    std::fs::create_dir(&staging).unwrap();
    let d1 = NaiveDate::from_ymd_opt(2024, 4, 30).unwrap();
    let nights = [d1, d1 + Duration::days(1)];
    write_nights(
        &staging,
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        &nights,
    );
    let copy = |name: &str| std::fs::copy(staging.join(name), input.join(name)).unwrap();
    copy("night1.csv");
    let (inc, full) = (tmp.path().join("inc"), tmp.path().join("full"));
    night(&inc, &input, d1, &["-q", "--incremental"]).ok();
    // The reference runs both nights too: tier_transitions reads the tiers
    // the night before published.
    night(&full, &input, d1, &["-q"]).ok();
    let first = input.join("night1.csv");
    let mut text = std::fs::read_to_string(&first).unwrap();
    text.push_str("c999,2024-02-10T10:00:00,20.25,late-old,books\n");
    std::fs::write(&first, text).unwrap();
    copy("night2.csv");
    let run = night(&inc, &input, nights[1], &["--incremental"]).ok();
    assert!(
        run.stderr.contains("incremental run: a full night (")
            && run.stderr.contains("night1.csv changed since 2024-04-30"),
        "{}",
        run.stderr
    );
    night(&full, &input, nights[1], &["-q"]).ok();
    for table in TABLES {
        let (a, b) = (rows(&inc, table, nights[1]), rows(&full, table, nights[1]));
        assert_same_rows_within(table, &a, &b, 1e-9, 1e-9);
    }
    // A customer only the late February row has is in the tiers.
    let late = rows(&inc, "customer_tiers", nights[1]);
    assert!(late.iter().any(|l| l.starts_with("c999,")), "{late:?}");

    let tz = ["--set", "timezone=Asia/Tokyo"];
    let run = night(
        &inc,
        &input,
        nights[1],
        &[&["--incremental"], &tz[..]].concat(),
    )
    .ok();
    assert!(
        run.stderr
            .contains("a full night (the previous customer_state was built with other settings")
            && run.stderr.contains("timezone UTC")
            && run.stderr.contains("timezone Asia/Tokyo"),
        "{}",
        run.stderr
    );
    // A state without the order ids beside it (as an earlier custval
    // published it) cannot count an order once across the cutoff.
    std::fs::remove_dir_all(inc.join("order_state")).unwrap();
    let run = night(
        &inc,
        &input,
        nights[1] + Duration::days(1),
        &[&["--incremental"], &tz[..]].concat(),
    )
    .ok();
    assert!(
        run.stderr.contains(
            "a full night (no order_state published beside the customer_state of 2024-05-01)"
        ),
        "{}",
        run.stderr
    );
    let run = night(
        &inc,
        &input,
        nights[1],
        &["--incremental", "--set", "holdout_days=30"],
    )
    .code(2);
    assert!(
        run.stderr.contains("lookback_days")
            && run
                .stderr
                .contains("holdout_days (30) <= lookback_days (7)"),
        "{}",
        run.stderr
    );
}
