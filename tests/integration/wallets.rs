//! Share of wallet against known truth (issue 20): `custval generate
//! --wallets` draws a latent wallet per customer and per category (the
//! recipe in its truth.json), the nightly job estimates them, and the
//! estimates are compared with the truth here. Every expected figure is
//! computed in this file from the generated truth and the published rows.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{nightly, nightly_cdnow, read_json, Cmd};

/// Ranks 1..n, ties given their average rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            out[*k] = avg;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rho: Pearson's correlation of the (average) ranks.
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// The linear-interpolation quantile (as percentile_cont) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    s[lo] + (pos - lo as f64) * (s[hi] - s[lo])
}

/// The paper's other estimate, measured here for comparison (README, "Share
/// of wallet", says why the product fits the quantile line instead): for
/// each query, the `q` quantile of spend among the `k` nearest `reference`
/// customers (features, spend) in feature space standardised by the
/// reference's standard deviation of each feature. Brute force.
fn knn_quantiles(
    reference: &[(Vec<f64>, f64)],
    queries: &[Vec<f64>],
    k: usize,
    q: f64,
) -> Vec<f64> {
    let d = reference[0].0.len();
    let n = reference.len() as f64;
    let scale: Vec<f64> = (0..d)
        .map(|j| {
            let m = reference.iter().map(|r| r.0[j]).sum::<f64>() / n;
            let v = reference.iter().map(|r| (r.0[j] - m).powi(2)).sum::<f64>() / n;
            if v > 0.0 {
                1.0 / v.sqrt()
            } else {
                0.0
            }
        })
        .collect();
    queries
        .iter()
        .map(|x| {
            let mut dist: Vec<(f64, f64)> = reference
                .iter()
                .map(|(f, s)| {
                    let d2 = (0..d)
                        .map(|j| ((f[j] - x[j]) * scale[j]).powi(2))
                        .sum::<f64>();
                    (d2, *s)
                })
                .collect();
            dist.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
            let near: Vec<f64> = dist[..k].iter().map(|p| p.1).collect();
            quantile(&near, q)
        })
        .collect()
}

/// k-nearest-neighbour wallets for `rows` (columns frequency, t,
/// spend_12m, categories, peer_group): the features of the product's
/// quantile line (ln(1 + x) of frequency, t, categories bought and the peer
/// group's `q` quantile of spend_12m), every `stride`-th row the reference,
/// k = 50 (the 0.9 quantile then rests on 5 neighbours above it), never
/// below the customer's spend_12m (as the product's).
fn knn_wallets(rows: &[HashMap<String, String>], q: f64, stride: usize) -> Vec<f64> {
    let mut by_peer: HashMap<&str, Vec<f64>> = HashMap::new();
    for r in rows {
        by_peer
            .entry(r["peer_group"].as_str())
            .or_default()
            .push(num(r, "spend_12m").max(0.0));
    }
    let peer: HashMap<&str, f64> = by_peer
        .into_iter()
        .map(|(k, v)| (k, quantile(&v, q)))
        .collect();
    let features: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            [
                num(r, "frequency"),
                num(r, "t"),
                num(r, "categories"),
                peer[r["peer_group"].as_str()],
            ]
            .iter()
            .map(|x| x.ln_1p())
            .collect()
        })
        .collect();
    let reference: Vec<(Vec<f64>, f64)> = features
        .iter()
        .zip(rows)
        .step_by(stride)
        .map(|(f, r)| (f.clone(), num(r, "spend_12m").max(0.0)))
        .collect();
    knn_quantiles(&reference, &features, 50, q)
        .into_iter()
        .zip(rows)
        .map(|(w, r)| w.max(num(r, "spend_12m")))
        .collect()
}

/// The features knn_wallets reads, with spend_12m, the published wallet and
/// share_of_wallet and the tier, for each customer (peer_group '' without a
/// truth file to take it from), in customer order: the reference sample and
/// the neighbours among tied distances are then the same every run.
fn features_sql(with_truth: bool) -> String {
    let (peer, join) = if with_truth {
        (
            "w.peer_group, w.wallet AS true_wallet",
            "JOIN w ON CAST(w.customer_id AS VARCHAR) = t.customer_id",
        )
    } else {
        ("'' AS peer_group", "")
    };
    format!(
        "SELECT t.customer_id, t.tier, t.frequency, t.t, t.spend_12m, t.wallet, t.share_of_wallet, \
         k.categories, {peer} FROM t {join} JOIN (SELECT customer_id, count(*) AS categories \
         FROM c GROUP BY customer_id) k ON k.customer_id = t.customer_id ORDER BY t.customer_id"
    )
}

#[test]
fn knn_quantiles_by_hand() {
    // Reference spends 1..=10 at x = 1..=10 (and y = 0, a feature that does
    // not vary): the 3 nearest to x = 5.1 are 4, 5, 6, whose 0.5 quantile
    // is 5; to x = 100 the 3 largest, 0.5 quantile 9.
    let reference: Vec<(Vec<f64>, f64)> =
        (1..=10).map(|i| (vec![i as f64, 0.0], i as f64)).collect();
    let got = knn_quantiles(&reference, &[vec![5.1, 0.0], vec![100.0, 0.0]], 3, 0.5);
    assert_eq!(got, vec![5.0, 9.0]);
}

#[test]
fn spearman_and_ranks_by_hand() {
    // Ranks of (10, 20, 20, 30): 1, 2.5, 2.5, 4.
    assert_eq!(ranks(&[10.0, 20.0, 20.0, 30.0]), vec![1.0, 2.5, 2.5, 4.0]);
    // A monotone transform keeps rho at 1; reversing gives -1.
    let a = [1.0, 2.0, 3.0, 4.0, 5.0];
    let b: Vec<f64> = a.iter().map(|x: &f64| x.exp()).collect();
    assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
    let c: Vec<f64> = a.iter().map(|x| -x).collect();
    assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
    assert!((quantile(&[10.0, 20.0, 30.0, 40.0, 50.0], 0.9) - 46.0).abs() < 1e-12);
}

/// Rows of `sql` over the named tables, as CSV records keyed by column.
fn query(tables: &[(&str, String)], sql: &str) -> Vec<HashMap<String, String>> {
    let mut c = Cmd::custval();
    c.args(["sql", "--format", "csv"]);
    for (name, url) in tables {
        c.arg("--table").arg(format!("{name}={url}"));
    }
    let text = c.arg(sql).stdout();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn num(r: &HashMap<String, String>, k: &str) -> f64 {
    r[k].parse()
        .unwrap_or_else(|_| panic!("{k} is not a number in {r:?}"))
}

/// Generate `customers` with wallets into `dir/data`; the as-of date.
fn generate(dir: &Path, customers: u64, extra: &[&str]) -> String {
    let data = dir.join("data");
    Cmd::custval()
        .args(["generate", "--wallets", "--seed", "20", "--customers"])
        .arg(customers.to_string())
        .args(extra)
        .arg("--out")
        .arg(&data)
        .ok();
    let truth = read_json(&data.join("truth.json"));
    assert!(truth["wallets"]["recipe"].is_string(), "{truth}");
    truth["end"].as_str().unwrap().to_string()
}

/// Generate `customers` with wallets into `dir`, run the nightly job into
/// `dir/out`; the as-of date.
fn generate_and_run(dir: &Path, customers: u64, extra: &[&str]) -> String {
    let end = generate(dir, customers, extra);
    nightly(
        dir.join("out"),
        &end,
        format!("{}/data/transactions/", dir.display()),
    )
    .ok();
    end
}

/// The figures of one generated run.
struct Figures {
    rho_model: f64,
    rho_baseline: f64,
    below: f64,
    rho_knn: f64,
    below_knn: f64,
    rho_category: f64,
    rho_category_baseline: f64,
}

/// Share of wallet on `customers` generated with the extra `generate`
/// arguments, against the truth: Spearman of the model's and the
/// constant-wallet baseline's share with the true one (the baseline: the
/// 0.9 quantile of everyone's spend_12m as every wallet, what custval
/// published before), the fraction of customers whose true wallet is below
/// the estimate, and the same Spearman per (customer, category) (baseline:
/// each category's 0.9 quantile of its customers' spend_12m).
fn figures(customers: u64, extra: &[&str]) -> Figures {
    let tmp = tempfile::tempdir().unwrap();
    let end = generate_and_run(tmp.path(), customers, extra);
    let out = tmp.path().join("out");
    let part = |t: &str| format!("{}/{t}/as_of={end}/", out.display());
    let truth = format!("{}/data/wallets/", tmp.path().display());
    let rows = query(
        &[("t", part("customer_tiers")), ("w", truth.clone())],
        "SELECT t.spend_12m, t.wallet, t.share_of_wallet, t.wallet_source, w.wallet AS true_wallet \
         FROM t JOIN w ON CAST(w.customer_id AS VARCHAR) = t.customer_id",
    );
    assert_eq!(
        rows.len() as u64,
        customers,
        "every customer bought at least once"
    );
    let sources: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["wallet_source"].as_str()).collect();
    assert_eq!(sources.into_iter().collect::<Vec<_>>(), vec!["model"]);
    let (rho_model, rho_baseline) = rhos(&rows, "spend_12m", "true_wallet", None, 0.9);
    let below = rows
        .iter()
        .filter(|r| num(r, "true_wallet") < num(r, "wallet"))
        .count() as f64
        / rows.len() as f64;
    // k-nearest-neighbour quantiles on the same customers, for comparison
    // (reference: every 50th customer, 2,000 of 100,000).
    let feats = query(
        &[
            ("t", part("customer_tiers")),
            ("c", part("customer_category_share")),
            ("w", truth.clone()),
        ],
        &features_sql(true),
    );
    let knn = knn_wallets(&feats, 0.9, 50);
    let knn_share: Vec<f64> = feats
        .iter()
        .zip(&knn)
        .map(|(r, w)| {
            if *w > 0.0 {
                (num(r, "spend_12m").max(0.0) / w).min(1.0)
            } else {
                0.0
            }
        })
        .collect();
    let true_share: Vec<f64> = feats
        .iter()
        .map(|r| (num(r, "spend_12m").max(0.0) / num(r, "true_wallet")).min(1.0))
        .collect();
    let rho_knn = spearman(&knn_share, &true_share);
    let below_knn = feats
        .iter()
        .zip(&knn)
        .filter(|(r, w)| num(r, "true_wallet") < **w)
        .count() as f64
        / feats.len() as f64;
    let cats = query(
        &[("c", part("customer_category_share")), ("w", truth)],
        "SELECT c.category, c.spend_12m, c.share_of_wallet, w.category_wallet AS true_wallet \
         FROM c JOIN w ON CAST(w.customer_id AS VARCHAR) = c.customer_id",
    );
    let (rho_category, rho_category_baseline) =
        rhos(&cats, "spend_12m", "true_wallet", Some("category"), 0.9);
    // report.html's wallet section: headroom by tier with its Total row,
    // whose customers are all of them.
    let report =
        std::fs::read_to_string(out.join(format!("_reports/nightly/as_of={end}/report.html")))
            .unwrap();
    // The report writes counts with thousands separators (100,000).
    let grouped = customers
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        report.contains(&format!("<tr><td>Total</td><td>{grouped}</td>")),
        "no Total headroom row with {grouped} customers in report.html"
    );
    Figures {
        rho_model,
        rho_baseline,
        below,
        rho_knn,
        below_knn,
        rho_category,
        rho_category_baseline,
    }
}

/// Spearman of the published share_of_wallet, and of the constant-wallet
/// baseline (the `q` quantile of `spend`, within each `group` when given),
/// with the true share min(1, spend / true wallet).
fn rhos(
    rows: &[HashMap<String, String>],
    spend: &str,
    truth: &str,
    group: Option<&str>,
    q: f64,
) -> (f64, f64) {
    let s: Vec<f64> = rows.iter().map(|r| num(r, spend).max(0.0)).collect();
    let true_share: Vec<f64> = rows
        .iter()
        .zip(&s)
        .map(|(r, s)| (s / num(r, truth)).min(1.0))
        .collect();
    // A customer whose estimated wallet is 0 (no customer like them spent
    // anything) has spent nothing (the wallet is never below the spend):
    // their share is NULL, ranked here as 0, the share of nothing spent.
    let model: Vec<f64> = rows
        .iter()
        .map(|r| r["share_of_wallet"].parse().unwrap_or(0.0))
        .collect();
    let key = |r: &HashMap<String, String>| group.map(|g| r[g].clone()).unwrap_or_default();
    let mut by_group: HashMap<String, Vec<f64>> = HashMap::new();
    for (r, v) in rows.iter().zip(&s) {
        by_group.entry(key(r)).or_default().push(*v);
    }
    let constant: HashMap<String, f64> = by_group
        .into_iter()
        .map(|(k, v)| (k, quantile(&v, q)))
        .collect();
    let baseline: Vec<f64> = rows
        .iter()
        .zip(&s)
        .map(|(r, v)| (v / constant[&key(r)]).min(1.0))
        .collect();
    (
        spearman(&model, &true_share),
        spearman(&baseline, &true_share),
    )
}

/// Done-when of issue 20 on 100,000 generated customers (the generator's
/// recipe, shares Beta(2, 2)): the model's share of wallet ranks customers
/// like the true share, Spearman >= 0.6 and above the constant-wallet
/// baseline, per customer and per category. The fraction of customers whose
/// true wallet is below the estimate is printed, not asserted: it is far
/// below wallet_quantile here (README, "Share of wallet", says why; a survey
/// sample calibrates it, `a_survey_sample_calibrates_the_wallet_quantile`).
/// k-nearest-neighbour quantiles' figures are printed beside, for the
/// README's comparison.
#[test]
fn estimated_share_of_wallet_ranks_like_the_true_one() {
    let f = figures(100_000, &[]);
    println!(
        "100,000 generated customers: Spearman with the true share of wallet: model {:.3}, \
         constant-wallet baseline {:.3}; per category: model {:.3}, baseline {:.3}; \
         true wallet below the estimate for {:.3} of customers (wallet_quantile 0.9)",
        f.rho_model, f.rho_baseline, f.rho_category, f.rho_category_baseline, f.below
    );
    println!(
        "k-nearest-neighbour quantiles (k 50, 2,000 reference customers) on the same customers: \
         Spearman {:.3}, true wallet below the estimate for {:.3}",
        f.rho_knn, f.below_knn
    );
    assert!(f.rho_model >= 0.6, "model Spearman {}", f.rho_model);
    assert!(f.rho_model > f.rho_baseline, "model vs baseline");
    assert!(f.rho_category > f.rho_category_baseline, "per category");
}

/// Calibration against a survey (issue 20, fault 1): on 100,000 generated
/// customers with the true wallets of a 5% sample (customer ids 7 mod 20,
/// unrelated to how the generator draws wallets) given as the `wallets`
/// input, for wallet_quantile 0.9 and 0.8: over the other 95% the true
/// wallet is below the estimate for wallet_quantile of them within 0.05
/// (the tolerance; the calibration's own sampling error from about
/// 1,900 and 3,100 surveyed customers per stratum is about 0.01), the
/// model's share ranks like the true one better than the constant-wallet
/// baseline (the same quantile of everyone's spend_12m), and the surveyed
/// customers keep their input wallet (wallet_source input).
#[test]
fn a_survey_sample_calibrates_the_wallet_quantile() {
    let tmp = tempfile::tempdir().unwrap();
    let end = generate(tmp.path(), 100_000, &[]);
    let truth = format!("{}/data/wallets/", tmp.path().display());
    let survey = tmp.path().join("survey.csv");
    let sample = Cmd::custval()
        .args(["sql", "--format", "csv", "--table"])
        .arg(format!("w={truth}"))
        .arg(
            "SELECT CAST(customer_id AS VARCHAR) AS customer_id, wallet FROM w \
             WHERE CAST(customer_id AS BIGINT) % 20 = 7",
        )
        .stdout();
    assert_eq!(
        sample.lines().count(),
        5_001,
        "a header and 5,000 customers"
    );
    std::fs::write(&survey, sample).unwrap();
    for q in [0.9, 0.8] {
        let out = tmp.path().join(format!("out-{q}"));
        nightly(
            &out,
            &end,
            format!("{}/data/transactions/", tmp.path().display()),
        )
        .args(["--set", &format!("wallet_quantile={q}"), "--input"])
        .arg(format!("wallets={}", survey.display()))
        .ok();
        let rows = query(
            &[
                (
                    "t",
                    format!("{}/customer_tiers/as_of={end}/", out.display()),
                ),
                ("w", truth.clone()),
            ],
            "SELECT t.spend_12m, t.wallet, t.share_of_wallet, t.wallet_source, \
             t.wallet_calibration, w.wallet AS true_wallet, \
             CAST(w.customer_id AS BIGINT) % 20 = 7 AS surveyed \
             FROM t JOIN w ON CAST(w.customer_id AS VARCHAR) = t.customer_id",
        );
        assert_eq!(rows.len(), 100_000);
        let (surveyed, others): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r["surveyed"] == "true");
        for r in &surveyed {
            assert_eq!(r["wallet_source"], "input", "{r:?}");
            assert!((num(r, "wallet") - num(r, "true_wallet")).abs() <= 1e-9 * num(r, "wallet"));
        }
        assert!(others.iter().all(|r| r["wallet_source"] == "model"));
        // Two strata, two multipliers, each above 1 here (the uncalibrated
        // estimate is below most true wallets).
        let factors: std::collections::BTreeSet<String> = others
            .iter()
            .map(|r| r["wallet_calibration"].clone())
            .collect();
        assert_eq!(factors.len(), 2, "{factors:?}");
        assert!(
            factors.iter().all(|f| f.parse::<f64>().unwrap() > 1.0),
            "{factors:?}"
        );
        let below = others
            .iter()
            .filter(|r| num(r, "true_wallet") < num(r, "wallet"))
            .count() as f64
            / others.len() as f64;
        let (rho_model, rho_baseline) = rhos(&others, "spend_12m", "true_wallet", None, q);
        println!(
            "wallet_quantile {q}, 5% surveyed: over the other 95,000 customers the true wallet is \
             below the estimate for {below:.3}; Spearman with the true share: model {rho_model:.3}, \
             constant-wallet baseline {rho_baseline:.3}; calibration multipliers {factors:?}"
        );
        assert!((below - q).abs() <= 0.05, "coverage {below} at {q}");
        let report =
            std::fs::read_to_string(out.join(format!("_reports/nightly/as_of={end}/report.html")))
                .unwrap();
        assert!(
            report.contains("calibrated by the survey sample in the wallets input"),
            "report.html does not say the wallets are calibrated"
        );
        assert!(
            rho_model >= 0.6 && rho_model > rho_baseline,
            "{rho_model} vs {rho_baseline}"
        );
    }
}

/// Plausibility on data nobody here generated (issue 20, fault 2), and the
/// wallet of customers who spent nothing in the 12 months (fault 3): the
/// CDNOW sample (tests/data, 2,357 customers) as of 1998-06-30, as
/// docs/report.png's run. "Plausible" is the definition: the same
/// order of magnitude as the spend of comparable customers, so the bounds
/// are a factor of 10. (1) No tier's median wallet is above 10 times the
/// 99th percentile of 12-month spend among the customers whose frequency
/// lies in the tier's range (its neighbours in the feature the estimate
/// leans on most). (2) Platinum's share of wallet (summed spend over summed
/// wallet) is within [0.1, 1]: its wallet at most 10 times its spend
/// (unbounded, the quantile line gave 0.004, 11.8M against 47k). (3) Every
/// customer has a wallet; share_of_wallet is NULL exactly where the wallet
/// is 0 (the share of nothing cannot be told), else 0 for a customer
/// without 12-month spend.
#[test]
fn cdnow_wallets_are_plausible_and_defined_for_every_customer() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    nightly_cdnow(&out, "1998-06-30").ok();
    let rows = query(
        &[(
            "t",
            format!("{}/customer_tiers/as_of=1998-06-30/", out.display()),
        )],
        "SELECT tier, frequency, spend_12m, wallet, share_of_wallet, wallet_source FROM t",
    );
    assert_eq!(rows.len(), 2_357);
    let mut tiers: Vec<String> = rows.iter().map(|r| r["tier"].clone()).collect();
    tiers.sort();
    tiers.dedup();
    for tier in &tiers {
        let members: Vec<_> = rows.iter().filter(|r| &r["tier"] == tier).collect();
        let freq: Vec<f64> = members.iter().map(|r| num(r, "frequency")).collect();
        let (lo, hi) = (quantile(&freq, 0.0), quantile(&freq, 1.0));
        let neighbours: Vec<f64> = rows
            .iter()
            .filter(|r| (lo..=hi).contains(&num(r, "frequency")))
            .map(|r| num(r, "spend_12m"))
            .collect();
        let p99 = quantile(&neighbours, 0.99);
        let wallets: Vec<f64> = members.iter().map(|r| num(r, "wallet")).collect();
        let spend: f64 = members.iter().map(|r| num(r, "spend_12m")).sum();
        let median = quantile(&wallets, 0.5);
        println!(
            "CDNOW 1998-06-30 {tier}: {} customers, frequency {lo}..{hi}, median wallet {median:.2}, \
             99th percentile of the neighbours' 12-month spend {p99:.2}, share of wallet {:.3}",
            members.len(),
            spend / wallets.iter().sum::<f64>()
        );
        assert!(
            median <= 10.0 * p99,
            "{tier}: median wallet {median} vs {p99}"
        );
        if tier == "Platinum" {
            let share = spend / wallets.iter().sum::<f64>();
            assert!(
                (0.1..=1.0).contains(&share),
                "Platinum share of wallet {share}"
            );
        }
    }
    // The same per tier from k-nearest-neighbour quantiles (every customer
    // the reference), for comparison: summed share and the median ratio of
    // wallet to 12-month spend among customers with some.
    let feats = query(
        &[
            (
                "t",
                format!("{}/customer_tiers/as_of=1998-06-30/", out.display()),
            ),
            (
                "c",
                format!(
                    "{}/customer_category_share/as_of=1998-06-30/",
                    out.display()
                ),
            ),
        ],
        &features_sql(false),
    );
    let knn = knn_wallets(&feats, 0.9, 1);
    for tier in &tiers {
        let members: Vec<(f64, f64, f64)> = feats
            .iter()
            .zip(&knn)
            .filter(|(r, _)| &r["tier"] == tier)
            .map(|(r, k)| (num(r, "spend_12m"), num(r, "wallet"), *k))
            .collect();
        let spend: f64 = members.iter().map(|m| m.0).sum();
        let ratio = |i: usize| {
            let v: Vec<f64> = members
                .iter()
                .filter(|m| m.0 > 0.0)
                .map(|m| if i == 1 { m.1 / m.0 } else { m.2 / m.0 })
                .collect();
            if v.is_empty() {
                f64::NAN
            } else {
                quantile(&v, 0.5)
            }
        };
        println!(
            "CDNOW {tier}: share of wallet: quantile line {:.3}, kNN {:.3}; median wallet / \
             12-month spend: quantile line {:.2}, kNN {:.2}",
            spend / members.iter().map(|m| m.1).sum::<f64>(),
            spend / members.iter().map(|m| m.2).sum::<f64>(),
            ratio(1),
            ratio(2)
        );
    }
    // Without a survey, report.html says what the estimate assumes.
    let report =
        std::fs::read_to_string(out.join("_reports/nightly/as_of=1998-06-30/report.html")).unwrap();
    assert!(
        report.contains("The model's wallets are uncalibrated: they assume the top"),
        "report.html does not say what the uncalibrated wallets assume"
    );
    let idle: Vec<_> = rows.iter().filter(|r| num(r, "spend_12m") == 0.0).collect();
    let null_share = idle
        .iter()
        .filter(|r| r["share_of_wallet"].is_empty())
        .count();
    println!(
        "CDNOW: {} customers without 12-month spend, share_of_wallet NULL for {null_share} \
         (wallet 0), 0 for the rest",
        idle.len()
    );
    // Independently: customers of the CSV without an order after 1997-06-30.
    let idle_in_csv = query(
        &[("c", crate::common::data("cdnow_sample.csv"))],
        "SELECT count(*) AS n FROM (SELECT customer_id FROM c GROUP BY customer_id \
         HAVING max(CAST(order_ts AS DATE)) <= DATE '1997-06-30')",
    );
    assert_eq!(idle.len() as f64, num(&idle_in_csv[0], "n"));
    for r in &rows {
        let wallet = num(r, "wallet");
        assert_eq!(r["share_of_wallet"].is_empty(), wallet == 0.0, "{r:?}");
        if num(r, "spend_12m") == 0.0 && wallet > 0.0 {
            assert_eq!(num(r, "share_of_wallet"), 0.0, "{r:?}");
        }
    }
}
