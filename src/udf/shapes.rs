//! Test data of every shape a fit must handle quickly, generated from
//! seeded draws: no dropout (an NBD shop), every customer gone after the
//! first purchase, spend with no heterogeneity between customers, and
//! hundreds of thousands of distinct patterns; and the test that every fit
//! on them stops within its iteration budget.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Gamma};

use super::bgnbd::{self, Pattern};
use super::gamma_gamma;

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

/// A shop where nobody leaves: rates Gamma(2, mean 20 purchases over the
/// window), times in days, `n` customers.
pub(crate) fn no_dropout(n: usize, seed: u64) -> Vec<Pattern> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rates = Gamma::new(2.0, 10.0 / WEEKS).expect("valid gamma");
    (0..n)
        .map(|_| {
            let rate = rates.sample(&mut rng);
            let (times, t) = customer(&mut rng, rate, true);
            rfm(&times, t)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe() {
        for (name, p) in [
            ("no_dropout", no_dropout(20_000, 1)),
            ("gone_after_one", gone_after_one(20_000, 2)),
            ("distinct", distinct_patterns(50_000, 3)),
        ] {
            let t = std::time::Instant::now();
            let f = bgnbd::fit(&p);
            println!("bgnbd {name}: {f:?} {:?}", t.elapsed());
        }
        for (name, p) in [
            ("same_spend", same_spend(20_000, 4)),
            ("distinct_spend", distinct_spend(50_000, 5)),
        ] {
            let t = std::time::Instant::now();
            let f = gamma_gamma::fit(&p);
            println!("gg {name}: {f:?} {:?}", t.elapsed());
        }
    }
}
