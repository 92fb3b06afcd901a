//! Test data of every shape a fit must handle quickly, generated from
//! seeded draws: no dropout (an NBD shop), every customer gone after the
//! first purchase, spend with no heterogeneity between customers, and
//! hundreds of thousands of distinct patterns; and the test that every fit
//! on them stops within its iteration budget.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Gamma};

use super::bgnbd::{self, Pattern};
use super::{bgbb, gamma_gamma, mbgnbd, pareto_nbd};

/// Observation window of the generated shops: two years, in weeks.
const WEEKS: f64 = 104.0;

/// One customer's purchase times (weeks since the first purchase, the first
/// at 0) and age T: Poisson purchases at `rate` per week, never leaving,
/// first purchase uniform over the window. `day` rounds times to days
/// (purchases on one day merge, as in the RFM summary).
fn customer(rng: &mut impl Rng, rate: f64, day: bool) -> (Vec<f64>, f64) {
    let first = rng.random_range(0.0..WEEKS);
    let t = WEEKS - first;
    let mut times = vec![0.0];
    let mut now = 0.0;
    let exp = Exp::new(rate.max(1e-12)).expect("positive rate");
    loop {
        now += exp.sample(rng);
        if now > t {
            break;
        }
        let v = if day { (now * 7.0).floor() / 7.0 } else { now };
        if times.last() != Some(&v) {
            times.push(v);
        }
    }
    (times, if day { (t * 7.0).floor() / 7.0 } else { t })
}

/// BG/NBD patterns (one per customer, weight 1) from purchase times.
fn rfm(times: &[f64], t: f64) -> Pattern {
    let x = times.len() as f64 - 1.0;
    Pattern {
        frequency: x,
        recency: if x > 0.0 { times[times.len() - 1] } else { 0.0 },
        t,
        weight: 1.0,
    }
}

/// A shop where nobody leaves, as issue 17 measured it: about 20 orders
/// per customer over the two years at uniformly random times (Poisson
/// purchases, rates Gamma(10, mean 20 per window): little heterogeneity),
/// times in days, `n` customers.
pub(crate) fn no_dropout(n: usize, seed: u64) -> Vec<Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rates = Gamma::new(10.0, 2.0 / WEEKS).expect("valid gamma");
    (0..n)
        .map(|_| {
            let rate = rates.sample(&mut rng);
            let (times, t) = customer(&mut rng, rate, true);
            rfm(&times, t)
        })
        .collect()
}

/// A shop where nobody leaves and everyone buys at the same rate (20
/// orders per two years: a homogeneous Poisson process, BG/NBD's limit
/// a -> 0 and r, alpha -> infinity with r/alpha fixed), times in days, `n`
/// customers.
pub(crate) fn homogeneous_poisson(n: usize, seed: u64) -> Vec<Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (times, t) = customer(&mut rng, 20.0 / WEEKS, true);
            rfm(&times, t)
        })
        .collect()
}

/// [`homogeneous_poisson`] observed one day after its last possible
/// purchase (every T one day longer, no purchase in that day): issue 17's
/// no-dropout shop with the as-of a day after the data's end. The score
/// off BG/NBD's Poisson limit is heavy-tailed here (a customer whose last
/// purchase is g weeks before T adds e^(rate g) to it), so its slope off
/// the limit is large while what it promises is not.
pub(crate) fn poisson_observed_late(n: usize, seed: u64) -> Vec<Pattern> {
    homogeneous_poisson(n, seed)
        .into_iter()
        .map(|p| Pattern {
            t: p.t + 1.0 / 7.0,
            ..p
        })
        .collect()
}

/// A shop with one dropout probability for everyone (issue 15's
/// homogeneous p: BG/NBD's limit a, b -> infinity with a/(a+b) fixed):
/// the no-dropout shop's purchase rates and day-rounded times, and after
/// each repeat purchase every customer leaves with probability `dropout`.
pub(crate) fn one_dropout(n: usize, seed: u64, dropout: f64) -> Vec<Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rates = Gamma::new(10.0, 2.0 / WEEKS).expect("valid gamma");
    (0..n)
        .map(|_| {
            let rate = rates.sample(&mut rng);
            let (mut times, t) = customer(&mut rng, rate, true);
            if let Some(k) = (1..times.len()).find(|_| rng.random::<f64>() < dropout) {
                times.truncate(k + 1);
            }
            rfm(&times, t)
        })
        .collect()
}

/// [`one_dropout`]'s shop where customers may also leave right after the
/// first purchase, with the same probability (MBG/NBD's story): their
/// repeat purchases are never seen.
pub(crate) fn one_dropout_from_first(n: usize, seed: u64, dropout: f64) -> Vec<Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(1 << 32));
    one_dropout(n, seed, dropout)
        .into_iter()
        .map(|p| {
            if rng.random::<f64>() < dropout {
                Pattern {
                    frequency: 0.0,
                    recency: 0.0,
                    ..p
                }
            } else {
                p
            }
        })
        .collect()
}

/// Every customer bought once and never again (frequency 0), ages in days.
pub(crate) fn gone_after_one(n: usize, seed: u64) -> Vec<Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| Pattern {
            frequency: 0.0,
            recency: 0.0,
            t: (rng.random_range(0.0..WEEKS) * 7.0).floor() / 7.0,
            weight: 1.0,
        })
        .collect()
}

/// BG/NBD data with continuous times (no rounding), so nearly every
/// customer is a pattern of their own: rates Gamma(0.5, mean 10 over the
/// window), dropout after each repeat purchase with probability 0.2.
pub(crate) fn distinct_patterns(n: usize, seed: u64) -> Vec<Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rates = Gamma::new(0.5, 20.0 / WEEKS).expect("valid gamma");
    (0..n)
        .map(|_| {
            let rate = rates.sample(&mut rng);
            let (mut times, t) = customer(&mut rng, rate, false);
            if let Some(k) = (1..times.len()).find(|_| rng.random::<f64>() < 0.2) {
                times.truncate(k + 1);
            }
            rfm(&times, t)
        })
        .collect()
}

/// Gamma-Gamma patterns where every amount is drawn from one Gamma(3,
/// mean 50), whatever the customer: frequencies of the no-dropout shop.
pub(crate) fn same_spend(n: usize, seed: u64) -> Vec<gamma_gamma::Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let amounts = Gamma::new(3.0, 50.0 / 3.0).expect("valid gamma");
    no_dropout(n, seed)
        .into_iter()
        .map(|p| {
            let x = p.frequency;
            let total: f64 = (0..x as usize).map(|_| amounts.sample(&mut rng)).sum();
            gamma_gamma::Pattern {
                frequency: x,
                monetary_value: if x > 0.0 { total / x } else { 0.0 },
                weight: 1.0,
            }
        })
        .collect()
}

/// Gamma-Gamma patterns with heterogeneous spend (p 6, q 4, v 15 as on
/// CDNOW) and continuous amounts: every customer a pattern of their own.
pub(crate) fn distinct_spend(n: usize, seed: u64) -> Vec<gamma_gamma::Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let nus = Gamma::new(4.0, 1.0 / 15.0).expect("valid gamma");
    (0..n)
        .map(|_| {
            let x = rng.random_range(1..20) as f64;
            let nu: f64 = nus.sample(&mut rng);
            let spend = Gamma::new(6.0, 1.0 / nu).expect("valid gamma");
            let total: f64 = (0..x as usize).map(|_| spend.sample(&mut rng)).sum();
            gamma_gamma::Pattern {
                frequency: x,
                monetary_value: total / x,
                weight: 1.0,
            }
        })
        .collect()
}

/// BG/BB patterns (Fader, Hardie & Shang 2010): `n` customers over
/// `opportunities` discrete opportunities after the first, each
/// transacting at an opportunity with probability p ~ Beta(`pa`, `pb`)
/// while alive and dying before each opportunity with probability
/// theta ~ Beta(`ta`, `tb`); `None` for a shape's parameters means one
/// value for everyone (the limit of both shapes -> infinity at the given
/// mean), `Some(0.0)` for theta's mean means nobody leaves.
pub(crate) fn bgbb_shop(
    n: usize,
    seed: u64,
    opportunities: u32,
    p: (f64, Option<f64>),
    theta: (f64, Option<f64>),
) -> Vec<bgbb::Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // (mean, concentration a + b): Beta(mean k, (1 - mean) k), or the mean.
    let draw = |(mean, k): (f64, Option<f64>), rng: &mut rand::rngs::StdRng| match k {
        Some(k) if mean > 0.0 => rand_distr::Beta::new(mean * k, (1.0 - mean) * k)
            .expect("valid beta")
            .sample(rng),
        _ => mean,
    };
    // Customers sharing (x, t_x) are one weighted pattern, as the fit
    // aggregate gives them.
    let mut counts = std::collections::BTreeMap::<(u32, u32), f64>::new();
    let customers: Vec<bgbb::Pattern> = (0..n)
        .map(|_| {
            let (pi, th) = (draw(p, &mut rng), draw(theta, &mut rng));
            let (mut x, mut last) = (0.0, 0.0);
            for t in 1..=opportunities {
                if rng.random::<f64>() < th {
                    break;
                }
                if rng.random::<f64>() < pi {
                    x += 1.0;
                    last = t as f64;
                }
            }
            bgbb::Pattern {
                frequency: x,
                recency: last,
                n: opportunities as f64,
                weight: 1.0,
            }
        })
        .collect();
    for c in &customers {
        *counts
            .entry((c.frequency as u32, c.recency as u32))
            .or_default() += 1.0;
    }
    counts
        .into_iter()
        .map(|((x, tx), weight)| bgbb::Pattern {
            frequency: x as f64,
            recency: tx as f64,
            n: opportunities as f64,
            weight,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Iterations a fit may spend on any shape (issue 17: "well under 100").
    const BUDGET: usize = 100;

    #[test]
    fn a_slope_off_a_limit_that_promises_nothing_does_not_start_a_crawl() {
        // Issue 17's no-dropout shop at 1M customers, observed a day late:
        // the Poisson limit's slope off it is positive by a hair, the
        // interior supremum lies at an unmodelled corner a rounding error
        // better, and the interior search crawled towards it (over 200 s
        // in debug before the candidate check; 2,241 iterations and 278 s
        // in release on the benchmark's 20M-row file). Now the limit is
        // the result after the faces (at most 60 iterations each) and the
        // candidate check (70). 122 iterations here: issue 17's 100 is
        // not met on this shape yet (the NBD and one-dropout faces spend
        // 63 running off towards the Poisson limit).
        let f = bgnbd::fit(&poisson_observed_late(1_000_000, 9));
        println!(
            "bgnbd_fit, Poisson observed late, 1M: {} iterations, {:?}",
            f.iterations, f.at_bound
        );
        assert!(f.converged && f.status == "boundary", "{f:?}");
        assert!(f.params.poisson_rate().is_some(), "{f:?}");
        assert!(f.iterations <= 3 * 60 + 70, "{f:?}");
        let at = f.at_bound.as_deref().unwrap_or_default();
        assert!(
            at.contains("no interior point is better by more than 1e-6"),
            "{at}"
        );
    }

    #[test]
    fn every_fit_stops_within_its_budget_whatever_the_shape() {
        // Not a timing: the iteration count of each fit (over all starts,
        // stages, faces and probes) on each shape, printed, under BUDGET;
        // and each ends where that shape's likelihood has its optimum.
        let cases = [
            ("no dropout", no_dropout(20_000, 1), Some("boundary")),
            (
                "no dropout, 300,000 customers",
                no_dropout(300_000, 7),
                Some("boundary"),
            ),
            (
                "homogeneous Poisson, no dropout",
                homogeneous_poisson(20_000, 9),
                Some("boundary"),
            ),
            (
                "homogeneous Poisson observed a day late",
                poisson_observed_late(20_000, 9),
                Some("boundary"),
            ),
            ("gone after one purchase", gone_after_one(20_000, 2), None),
            (
                "one dropout probability for everyone",
                one_dropout(20_000, 8, 0.1),
                Some("boundary"),
            ),
            (
                "700,000 distinct patterns",
                distinct_patterns(700_000, 3),
                Some("converged"),
            ),
        ];
        for (name, patterns, status) in cases {
            let f = bgnbd::fit(&patterns);
            println!(
                "bgnbd_fit, {name}: {} iterations, {}",
                f.iterations, f.status
            );
            assert!(f.iterations < BUDGET, "{name}: {f:?}");
            match status {
                Some(s) => assert!(f.converged && f.status == s, "{name}: {f:?}"),
                // One purchase each: nothing identifies the purchase rate
                // (r runs off, alpha is flat), and that is said, not hidden.
                None => assert!(!f.converged && f.status.contains("not identified"), "{f:?}"),
            }
        }
        let cases = [
            ("same spend for everyone", same_spend(20_000, 4), "boundary"),
            (
                "700,000 distinct spends",
                distinct_spend(700_000, 5),
                "converged",
            ),
        ];
        for (name, patterns, status) in cases {
            let f = gamma_gamma::fit(&patterns);
            println!(
                "gamma_gamma_fit, {name}: {} iterations, {}",
                f.iterations, f.status
            );
            assert!(f.iterations < BUDGET, "{name}: {f:?}");
            assert!(f.converged && f.status == status, "{name}: {f:?}");
        }
        // One purchase each leaves Gamma-Gamma nothing to fit: no iteration.
        let none: Vec<gamma_gamma::Pattern> = gone_after_one(1_000, 6)
            .iter()
            .map(|p| gamma_gamma::Pattern {
                frequency: p.frequency,
                monetary_value: 0.0,
                weight: 1.0,
            })
            .collect();
        let f = gamma_gamma::fit(&none);
        assert!(f.iterations == 0 && !f.converged, "{f:?}");
    }

    #[test]
    fn mbgnbd_stops_within_the_budget_on_the_boundary_shapes() {
        // MBG/NBD on the shapes above with an optimum at a boundary or none:
        // the no-dropout shop is its NBD limit a = 0 (verified boundary),
        // the homogeneous Poisson shop its Poisson limit,
        // one purchase each identifies nothing (said, not hidden); both
        // under BUDGET iterations, printed.
        let f = mbgnbd::fit(&no_dropout(20_000, 1));
        println!(
            "mbgnbd_fit, no dropout: {} iterations, {}",
            f.iterations, f.status
        );
        assert!(
            f.iterations < BUDGET && f.converged && f.status == "boundary",
            "{f:?}"
        );
        // The homogeneous Poisson shop is its Poisson limit (a = 0, r and
        // alpha infinite: BG/NBD's, the same NBD limit), verified; the
        // distinct patterns, whose customers all leave with probability
        // 0.2 after each repeat purchase, its one-dropout limit.
        let f = mbgnbd::fit(&homogeneous_poisson(20_000, 9));
        println!(
            "mbgnbd_fit, homogeneous Poisson: {} iterations, {}, {:?}",
            f.iterations, f.status, f.at_bound
        );
        assert!(
            f.iterations < BUDGET && f.converged && f.status == "boundary",
            "{f:?}"
        );
        assert!(f.params.r == f64::INFINITY, "{f:?}");
        let f = mbgnbd::fit(&distinct_patterns(100_000, 3));
        println!(
            "mbgnbd_fit, 100,000 distinct patterns: {} iterations, {}, {:?}",
            f.iterations, f.status, f.at_bound
        );
        assert!(
            f.iterations < BUDGET && f.converged && f.status == "boundary",
            "{f:?}"
        );
        assert!(f.params.common_dropout().is_some(), "{f:?}");
        let f = mbgnbd::fit(&one_dropout_from_first(20_000, 9, 0.1));
        println!(
            "mbgnbd_fit, one dropout probability for everyone: {} iterations, {}",
            f.iterations, f.status
        );
        assert!(
            f.iterations < BUDGET && f.converged && f.status == "boundary",
            "{f:?}"
        );
        let f = mbgnbd::fit(&gone_after_one(20_000, 2));
        println!(
            "mbgnbd_fit, gone after one: {} iterations, {}",
            f.iterations, f.status
        );
        assert!(f.iterations < BUDGET && !f.converged, "{f:?}");
        assert!(f.status.contains("not identified"), "{f:?}");
    }

    #[test]
    fn pareto_nbd_stops_within_the_budget_on_every_shape() {
        // Pareto/NBD on the purchase shapes: no dropout is its NBD limit
        // s = 0 (verified boundary); the homogeneous Poisson shop its
        // Poisson limit (s = 0, r and alpha infinite, one rate); the
        // one-dropout shop (BG/NBD's story: little heterogeneity in when
        // customers leave) its one-dropout-rate limit (s and beta
        // infinite, exponential lifetimes); distinct patterns an interior
        // optimum; one purchase each identifies nothing (said). Iterations
        // printed, each under BUDGET.
        let cases: [(&str, Vec<Pattern>, Option<&str>); 5] = [
            ("no dropout", no_dropout(20_000, 1), Some("boundary")),
            (
                "homogeneous Poisson, no dropout",
                homogeneous_poisson(20_000, 9),
                Some("boundary"),
            ),
            (
                "one dropout probability for everyone",
                one_dropout(2_000, 8, 0.1),
                Some("boundary"),
            ),
            (
                "100,000 distinct patterns",
                distinct_patterns(100_000, 3),
                Some("converged"),
            ),
            ("gone after one purchase", gone_after_one(20_000, 2), None),
        ];
        for (name, patterns, status) in cases {
            let f = pareto_nbd::fit(&patterns);
            println!(
                "pareto_nbd_fit, {name}: {} iterations, {}, {:?}",
                f.iterations, f.status, f.at_bound
            );
            assert!(f.iterations < BUDGET, "{name}: {f:?}");
            match status {
                Some(s) => assert!(f.converged && f.status == s, "{name}: {f:?}"),
                None => assert!(!f.converged && f.status.contains("not identified"), "{f:?}"),
            }
        }
    }

    #[test]
    fn bgbb_stops_within_the_budget_on_every_shape() {
        // BG/BB on six opportunities (the donation data's), 10,000
        // customers: heterogeneous transaction and dropout probabilities
        // (Beta(1.2, 0.8), Beta(0.6, 2.4)) converge inside; nobody leaving
        // is the limit gamma = 0, one transaction probability for everyone
        // (alpha, beta -> infinity; 3,009 iterations unconverged before it
        // was a face) and one dropout probability for everyone (gamma,
        // delta -> infinity; 2,056) their limits (verified boundaries).
        // Iterations printed, each under BUDGET.
        let het = (0.6, Some(2.0));
        let cases = [
            (
                "heterogeneous",
                bgbb_shop(10_000, 1, 6, het, (0.2, Some(3.0))),
                "converged",
            ),
            (
                "nobody leaves",
                bgbb_shop(10_000, 2, 6, het, (0.0, None)),
                "boundary",
            ),
            (
                "one transaction probability",
                bgbb_shop(10_000, 3, 6, (0.6, None), (0.2, Some(3.0))),
                "boundary",
            ),
            (
                "one dropout probability",
                bgbb_shop(10_000, 4, 6, het, (0.2, None)),
                "boundary",
            ),
        ];
        for (name, patterns, status) in cases {
            let f = bgbb::fit(&patterns);
            println!(
                "bgbb_fit, {name}: {} iterations, {}, {:?}, {:?}",
                f.iterations, f.status, f.params, f.at_bound
            );
            assert!(f.iterations < BUDGET, "{name}: {f:?}");
            assert!(f.converged && f.status == status, "{name}: {f:?}");
        }
    }

    #[test]
    fn small_shops_with_one_dropout_probability_are_fitted() {
        // Issue 15's fresh-user trial: small shops where everyone drops out
        // with the same probability exited 3. Sampling noise puts the
        // maximum on the one-dropout boundary or inside (a, b large but
        // finite) about equally often: either is a verified optimum, never
        // a failure, within BUDGET iterations; printed per shop.
        let mut statuses = std::collections::BTreeMap::<String, usize>::new();
        for seed in 0..20 {
            let f = bgnbd::fit(&one_dropout(300, 100 + seed, 0.15));
            println!(
                "bgnbd_fit, 300 customers, dropout 0.15, seed {seed}: {} iterations, {}, a {:.3e}, b {:.3e}, dropout {:.4}",
                f.iterations, f.status, f.params.a, f.params.b, f.params.mean_dropout()
            );
            assert!(f.converged && f.iterations < BUDGET, "seed {seed}: {f:?}");
            *statuses.entry(f.status.clone()).or_default() += 1;
        }
        println!("{statuses:?}");
        assert!(statuses.contains_key("boundary"), "{statuses:?}");
    }

    #[test]
    fn the_generated_shapes_are_what_they_say() {
        // Distinct patterns: at least 700,000 of the 700,000 customers'
        // (frequency, recency, T) differ (continuous times); nobody drops
        // out in the no-dropout shop, so its mean frequency is the rate
        // times the mean age: Gamma(10, 2/104) has mean 20/104 a week, the
        // mean age is 52 weeks, about 10 purchases (within 5%).
        let p = distinct_patterns(700_000, 3);
        let mut keys: Vec<[u64; 3]> = p
            .iter()
            .map(|p| [p.frequency, p.recency, p.t].map(f64::to_bits))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert!(keys.len() >= 690_000, "{} distinct", keys.len());
        let p = no_dropout(20_000, 1);
        let mean = p.iter().map(|p| p.frequency).sum::<f64>() / p.len() as f64;
        assert!((mean / 10.0 - 1.0).abs() < 0.05, "{mean}");
    }
}
