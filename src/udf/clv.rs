//! Discounted customer lifetime value, as `lifetimes`' `customer_lifetime_value`
//! computes it: monthly increments of a purchase model's expected purchases
//! (BG/NBD, Pareto/NBD or MBG/NBD) times the Gamma-Gamma expected spend,
//! discounted per month; its interval over the fits' parameter uncertainty
//! (delta method on ln CLV); then the SQL functions `clv`,
//! `pareto_nbd_clv`, `mbgnbd_clv`, the `*clv_interval` functions (the CLV
//! and both ends of its interval from one evaluation), `clv_low`,
//! `clv_high`; then tests.
//!
//! Cost: CLV is value * P(alive) * S(x, T) (S shared by the customers with
//! the same (x, T), memoized), and so is the gradient of ln CLV in the log
//! parameters: S's by forward differences per (x, T), memoized; P(alive)'s
//! and the expected spend's analytic, per customer. One interval function
//! returns the CLV and both ends, so the gradient is computed once per
//! customer.

use std::cell::Cell;

use super::bgnbd::{self, BgNbdParams};
use super::gamma_gamma::GammaGammaParams;
use super::mbgnbd::MbgNbdParams;
use super::pareto_nbd::ParetoNbdParams;
use super::Function;
use super::{gamma_gamma, mbgnbd, pareto_nbd};
use crate::numeric::memo;
use crate::numeric::special::normal_quantile;

/// A purchase model with its parameters: the factor of CLV besides the
/// expected spend, value * P(alive) * S(x, T).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Purchase {
    /// BG/NBD (r, alpha, a, b).
    Bg(BgNbdParams),
    /// Pareto/NBD (r, alpha, s, beta).
    Pareto(ParetoNbdParams),
    /// MBG/NBD (r, alpha, a, b).
    Mbg(MbgNbdParams),
}

/// The purchase model (BG/NBD, Pareto/NBD, MBG/NBD) of a [`Purchase`] (part
/// of a memo's key) and of an SQL function.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Model {
    Bg = 0,
    Pareto = 1,
    Mbg = 2,
}

impl Purchase {
    /// The model's parameters from its struct's fields `v` (its order, NULL
    /// as NaN): `None` when one is NULL (not converged), an error when one
    /// is not positive (the model's `params`).
    fn parse(model: Model, v: &[f64]) -> std::result::Result<Option<Purchase>, String> {
        Ok(match model {
            Model::Bg => bgnbd::params(v)?.map(Purchase::Bg),
            Model::Pareto => pareto_nbd::params(v)?.map(Purchase::Pareto),
            Model::Mbg => mbgnbd::params(v)?.map(Purchase::Mbg),
        })
    }

    fn model(&self) -> Model {
        match self {
            Purchase::Bg(_) => Model::Bg,
            Purchase::Pareto(_) => Model::Pareto,
            Purchase::Mbg(_) => Model::Mbg,
        }
    }

    /// The parameters in the struct's order.
    fn values(&self) -> [f64; 4] {
        match *self {
            Purchase::Bg(p) => [p.r, p.alpha, p.a, p.b],
            Purchase::Pareto(p) => [p.r, p.alpha, p.s, p.beta],
            Purchase::Mbg(p) => [p.r, p.alpha, p.a, p.b],
        }
    }

    /// The same model with the parameters `v` (the struct's order).
    fn with_values(&self, v: [f64; 4]) -> Purchase {
        let [r, alpha, c, d] = v;
        match self {
            Purchase::Bg(_) => Purchase::Bg(BgNbdParams {
                r,
                alpha,
                a: c,
                b: d,
            }),
            Purchase::Pareto(_) => Purchase::Pareto(ParetoNbdParams {
                r,
                alpha,
                s: c,
                beta: d,
            }),
            Purchase::Mbg(_) => Purchase::Mbg(MbgNbdParams {
                r,
                alpha,
                a: c,
                b: d,
            }),
        }
    }

    /// E[Y(h) | x, t_x, T] / P(alive), a function of (x, T) alone.
    fn bracket(&self, h: f64, x: f64, t: f64) -> f64 {
        match self {
            Purchase::Bg(p) => bgnbd::conditional_bracket(p, h, x, t),
            Purchase::Pareto(p) => pareto_nbd::conditional_bracket(p, h, x, t),
            Purchase::Mbg(p) => mbgnbd::bracket(p, h, x, t),
        }
    }

    /// P(alive at T | x, t_x, T).
    fn p_alive(&self, x: f64, tx: f64, t: f64) -> f64 {
        match self {
            Purchase::Bg(p) => bgnbd::p_alive(p, x, tx, t),
            Purchase::Pareto(p) => pareto_nbd::p_alive(p, x, tx, t),
            Purchase::Mbg(p) => mbgnbd::p_alive(p, x, tx, t),
        }
    }

    /// How many parameters, in order, the gradient moves: 2 in the
    /// no-dropout limit (a = 0, s = 0: the dropout parameters at their
    /// bound, fixed there, the other one without effect), else 4.
    fn free(&self) -> usize {
        if self.values()[2] == 0.0 {
            2
        } else {
            4
        }
    }

    /// d ln P(alive) / d(log parameters), analytic: P = 1 / (1 + O) with
    /// O the odds of having dropped out, so the gradient is -(1 - P) d ln O.
    /// 0 where P = 1 whatever the parameters (the no-dropout limit, a
    /// BG/NBD one-time buyer, a Pareto/NBD customer with t_x = T). `alive`
    /// is P(alive | x, t_x, T), which the CLV computes too.
    fn log_p_alive_gradient(&self, alive: f64, x: f64, tx: f64, t: f64) -> [f64; 4] {
        let d_ln_odds = match self {
            Purchase::Bg(p) => bg_log_odds_gradient(p, x, tx, t),
            Purchase::Pareto(p) => pareto_log_odds_gradient(p, x, tx, t),
            Purchase::Mbg(p) => mbg_log_odds_gradient(p, x, tx, t),
        };
        let Some(d) = d_ln_odds else {
            return [0.0; 4];
        };
        let dead = 1.0 - alive;
        d.map(|d| -dead * d)
    }
}

/// d ln O / d(ln r, ln alpha, ln a, ln b) of BG/NBD's dropout odds,
/// ln O = ln a - ln(b+x-1) + (r+x) (ln(alpha+T) - ln(alpha+t_x)) (Hardie,
/// note 021); `None` for one-time buyers and in the NBD limit (P = 1).
fn bg_log_odds_gradient(p: &BgNbdParams, x: f64, tx: f64, t: f64) -> Option<[f64; 4]> {
    if x <= 0.0 || p.a == 0.0 {
        return None;
    }
    let BgNbdParams { r, alpha, a: _, b } = *p;
    Some([
        r * ((alpha + t).ln() - (alpha + tx).ln()),
        (r + x) * alpha * (1.0 / (alpha + t) - 1.0 / (alpha + tx)),
        1.0,
        -b / (b + x - 1.0),
    ])
}

/// d ln O / d(ln r, ln alpha, ln a, ln b) of MBG/NBD's dropout odds,
/// ln O = ln a - ln(b+x) + (r+x) (ln(alpha+T) - ln(alpha+t_x)) (Batislam
/// et al. 2007, eq. 7), every x; `None` in the NBD limit a = 0.
fn mbg_log_odds_gradient(p: &MbgNbdParams, x: f64, tx: f64, t: f64) -> Option<[f64; 4]> {
    if p.a == 0.0 {
        return None;
    }
    let MbgNbdParams { r, alpha, a: _, b } = *p;
    Some([
        r * ((alpha + t).ln() - (alpha + tx).ln()),
        (r + x) * alpha * (1.0 / (alpha + t) - 1.0 / (alpha + tx)),
        1.0,
        -b / (b + x),
    ])
}

/// d ln O / d(ln r, ln alpha, ln s, ln beta) of Pareto/NBD's dropout odds,
/// ln O = ln s + ln(G(x, t_x) - G(x, T)) + (r+x) ln(alpha+T) + s ln(beta+T)
/// (pareto_nbd's module docs), G's gradient from its quadrature
/// (`pareto_nbd::ln_tail`, memoized per (x, u)); `None` in the no-dropout
/// limit s = 0 and when t_x = T (P = 1).
fn pareto_log_odds_gradient(p: &ParetoNbdParams, x: f64, tx: f64, t: f64) -> Option<[f64; 4]> {
    if p.s == 0.0 || tx >= t {
        return None;
    }
    let tail = |u: f64| {
        thread_local! {
            static MEMO: memo::MemoOf<6, (f64, [f64; 4])> = memo::MemoOf::default();
        }
        let key = [p.r, p.alpha, p.s, p.beta, x, u].map(f64::to_bits);
        memo::memoized(&MEMO, key, || pareto_nbd::ln_tail(p, x, u))
    };
    let (_, g) = pareto_nbd::ln_dead(tail(tx), tail(t));
    let ParetoNbdParams { r, alpha, s, beta } = *p;
    Some([
        g[0] + r * (alpha + t).ln(),
        g[1] + (r + x) * alpha / (alpha + t),
        g[2] + 1.0 + s * (beta + t).ln(),
        g[3] + s * beta / (beta + t),
    ])
}

/// Sum over months m = 1..=horizon of value * (E[Y(m u)] - E[Y((m-1) u)]) / (1 + d)^m,
/// u = time units per month (30 days or 4.345 weeks), under BG/NBD. Never
/// negative; NaN only when an input is. See [`purchase_clv`].
#[allow(clippy::too_many_arguments)]
pub fn clv(
    bg: &BgNbdParams,
    expected_value: f64,
    x: f64,
    tx: f64,
    t: f64,
    horizon_months: u32,
    monthly_discount_rate: f64,
    time_units_per_month: f64,
) -> f64 {
    let args = [x, tx, t, monthly_discount_rate, time_units_per_month];
    purchase_clv(&Purchase::Bg(*bg), expected_value, args, horizon_months)
}

/// [`clv`] under any purchase model; `args` are x, t_x, T, the monthly
/// discount rate and the time units per month.
/// E[Y] is P(alive) times a factor of (x, T) alone (BG/NBD's eq. 10), so
/// this is value * P(alive) * S(x, T), and S is shared by every customer
/// with the same (x, T): at 20M rows 1.5M customers have about 20,000 such
/// pairs.
pub fn purchase_clv(p: &Purchase, expected_value: f64, args: [f64; 5], horizon: u32) -> f64 {
    let [x, tx, t, rate, per_month] = args;
    let s = discounted_sum(p, [x, t, rate, per_month], horizon);
    clv_of(expected_value, p.p_alive(x, tx, t), s)
}

/// value * P(alive) * S: never negative; NaN when the expected spend is
/// not finite or a factor is NaN.
fn clv_of(expected_value: f64, alive: f64, s: f64) -> f64 {
    if !expected_value.is_finite() {
        return f64::NAN;
    }
    let value = expected_value * alive * s;
    // A negative expected spend counts as none; NaN stays NaN (`f64::max`
    // would turn it into 0), for the caller to report.
    if value < 0.0 {
        0.0
    } else {
        value
    }
}

/// The memo key of S(x, T) under `p` (and of its gradient): the model,
/// the parameters, x, T, the rate, the time units per month (`args`) and
/// the horizon.
fn sum_key(p: &Purchase, args: [f64; 4], horizon: u32) -> [u64; 10] {
    let [c0, c1, c2, c3] = p.values();
    let [x, t, rate, per_month] = args;
    [
        p.model() as u64,
        c0.to_bits(),
        c1.to_bits(),
        c2.to_bits(),
        c3.to_bits(),
        x.to_bits(),
        t.to_bits(),
        rate.to_bits(),
        per_month.to_bits(),
        u64::from(horizon),
    ]
}

/// S(x, T) = sum over months of the discounted increments of
/// E[Y(h)] / P(alive) under `p`; `args` are x, T, the monthly discount rate
/// and the time units per month. Memoized per thread (a pure function of
/// its arguments; the memo is dropped when it reaches 2^16 entries).
fn discounted_sum(p: &Purchase, args: [f64; 4], horizon: u32) -> f64 {
    thread_local! {
        static MEMO: memo::Memo<10> = memo::Memo::default();
    }
    let key = sum_key(p, args, horizon);
    memo::memoized(&MEMO, key, || discounted_sum_raw(p, args, horizon))
}

/// [`discounted_sum`] without the memo.
fn discounted_sum_raw(p: &Purchase, args: [f64; 4], horizon: u32) -> f64 {
    let [x, t, rate, per_month] = args;
    let mut total = 0.0;
    let mut prev = 0.0;
    for m in 1..=horizon {
        let e = p.bracket(m as f64 * per_month, x, t);
        total += (e - prev) / (1.0 + rate).powi(m as i32);
        prev = e;
    }
    total
}

/// Step of the forward differences of ln S in the log parameters: S is
/// accurate to about 1e-12 relative, so the derivative is to about 1e-6
/// (rounding) plus h times the second derivative (about 1e-6): far below
/// what a standard error needs. Forward rather than central differences:
/// S itself is at hand, so the gradient costs 4 more S per (x, T) instead
/// of 8.
const LOG_STEP: f64 = 1e-6;

/// S(x, T) and d ln S / d(log parameters) by forward differences,
/// memoized together per thread (the cost is per (x, T), not per
/// customer; one look-up gives the interval both); 0 for the parameters
/// [`Purchase::free`] leaves fixed. `args` as [`discounted_sum`]'s.
fn sum_and_gradient(p: &Purchase, args: [f64; 4], horizon: u32) -> (f64, [f64; 4]) {
    thread_local! {
        static MEMO: memo::MemoOf<10, (f64, [f64; 4])> = memo::MemoOf::default();
    }
    let key = sum_key(p, args, horizon);
    memo::memoized(&MEMO, key, || {
        let base = discounted_sum(p, args, horizon);
        let mut g = [0.0; 4];
        for (k, gk) in g.iter_mut().enumerate().take(p.free()) {
            let mut v = p.values();
            v[k] *= LOG_STEP.exp();
            let up = discounted_sum_raw(&p.with_values(v), args, horizon);
            // S = 0 (a horizon of 0 months) moves with no parameter; a NaN
            // stays NaN, making the interval NULL, never a zero slope.
            *gk = if up == 0.0 && base == 0.0 {
                0.0
            } else {
                (up / base).ln() / LOG_STEP
            };
        }
        (base, g)
    })
}

/// d ln E[M | x, m] / d(ln p, ln q, ln v, ln v_over_q) (Fader & Hardie
/// 2013, eq. 5: E = p (v + x m) / (p x + q - 1)); in the no-heterogeneity
/// limit E = p v_over_q.
fn log_value_gradient(gg: &GammaGammaParams, x: f64, m: f64) -> [f64; 4] {
    if gg.q.is_infinite() {
        return [1.0, 0.0, 0.0, 1.0];
    }
    let (x, m) = if x > 0.0 && m > 0.0 {
        (x, m)
    } else {
        (0.0, 0.0)
    };
    let d = gg.p * x + gg.q - 1.0;
    [1.0 - gg.p * x / d, -gg.q / d, gg.v / (gg.v + x * m), 0.0]
}

/// g' C g over the entries where C is defined. An undefined entry is
/// skipped only where the gradient is 0 (a parameter at its bound, fixed
/// there, as the gradients make it); anywhere else it makes the form
/// undefined (`None`, the interval NULL), never a silent 0. `None` too when
/// C has no defined diagonal entry (a fit without a covariance: not
/// converged) or the sum is not finite.
fn quadratic_form(g: &[f64; 4], c: &[[f64; 4]; 4]) -> Option<f64> {
    if (0..4).all(|i| c[i][i].is_nan()) {
        return None;
    }
    let mut v = 0.0;
    for i in 0..4 {
        for j in 0..4 {
            if g[i] == 0.0 || g[j] == 0.0 {
                continue;
            }
            if !c[i][j].is_finite() {
                return None;
            }
            v += g[i] * c[i][j] * g[j];
        }
    }
    // Rounding can leave a tiny negative variance; a NaN is not clamped.
    v.is_finite().then_some(v.max(0.0))
}

/// The gradient of ln CLV in the log parameters of the two fits, the
/// purchase model's (its struct's order) and (p, q, v, v_over_q): ln CLV is
/// ln E[M] plus ln P(alive) plus ln S(x, T); P and E are differentiated
/// analytically, S by forward differences per (x, T), memoized. `args` are
/// x, t_x, T, m, the monthly discount rate and the time units per month.
pub fn log_clv_gradient(
    p: &Purchase,
    gg: &GammaGammaParams,
    args: [f64; 6],
    horizon_months: u32,
) -> ([f64; 4], [f64; 4]) {
    let [x, tx, t, m, rate, per_month] = args;
    let (_, s) = sum_and_gradient(p, [x, t, rate, per_month], horizon_months);
    gradient_at(p, gg, s, p.p_alive(x, tx, t), [x, tx, t, m])
}

/// [`log_clv_gradient`] from ln S's gradient `s` and P(alive) = `alive`
/// for the customer (x, t_x, T, m).
fn gradient_at(
    p: &Purchase,
    gg: &GammaGammaParams,
    s: [f64; 4],
    alive: f64,
    [x, tx, t, m]: [f64; 4],
) -> ([f64; 4], [f64; 4]) {
    let a = p.log_p_alive_gradient(alive, x, tx, t);
    let g = [s[0] + a[0], s[1] + a[1], s[2] + a[2], s[3] + a[3]];
    (g, log_value_gradient(gg, x, m))
}

/// The standard deviation of ln CLV by the delta method: the gradient of
/// [`log_clv_gradient`] against the covariances of the two fits' log
/// parameters (`purchase_cov` over the purchase model's, `gg_cov` over (p,
/// q, v, v_over_q); the fits are independent, of different data). `None`
/// when a fit has no covariance.
pub fn log_sd(
    gradient: &([f64; 4], [f64; 4]),
    purchase_cov: &[[f64; 4]; 4],
    gg_cov: &[[f64; 4]; 4],
) -> Option<f64> {
    let v = quadratic_form(&gradient.0, purchase_cov)? + quadratic_form(&gradient.1, gg_cov)?;
    Some(v.sqrt())
}

/// The two-sided `level` interval of a value whose log has standard
/// deviation `sd` (log-normal: value e^(∓z sd), z the normal quantile of
/// (1 + level) / 2), so it is never negative and contains the value.
pub fn log_normal_interval(value: f64, sd: f64, level: f64) -> (f64, f64) {
    let z = z_of(level);
    (value * (-z * sd).exp(), value * (z * sd).exp())
}

/// The normal quantile of (1 + level) / 2, kept per thread for the last
/// level (one per query: no quantile per customer).
fn z_of(level: f64) -> f64 {
    thread_local! {
        static LAST: Cell<(f64, f64)> = const { Cell::new((f64::NAN, f64::NAN)) };
    }
    LAST.with(|last| {
        let (l, z) = last.get();
        if l == level {
            return z;
        }
        let z = normal_quantile(0.5 + 0.5 * level);
        last.set((level, z));
        z
    })
}

/// The arguments checked, and the Gamma-Gamma expected spend with the
/// horizon in months; `None` when the spend is NULL.
fn checked(
    gg: &gamma_gamma::GammaGammaParams,
    v: &[f64],
) -> std::result::Result<Option<(f64, u32)>, String> {
    let (x, tx, t, m, horizon, rate, per_month) = (v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    bgnbd::validate(x, tx, t)?;
    if !(horizon >= 0.0 && horizon.fract() == 0.0 && horizon <= 1200.0) {
        return Err(format!(
            "horizon_months must be a whole number of months in 0..=1200, got {horizon}"
        ));
    }
    if !(rate > -1.0 && rate.is_finite()) {
        return Err(format!("monthly_discount_rate must be > -1, got {rate}"));
    }
    if !(per_month > 0.0 && per_month.is_finite()) {
        return Err(format!(
            "time_units_per_month must be positive (30 for days, 4.345 for weeks), got {per_month}"
        ));
    }
    Ok(gamma_gamma::expected_value(gg, x, m).map(|value| (value, horizon as u32)))
}

/// A CLV and its interval (low, high), `None` where there is none.
type WithInterval = (f64, Option<(f64, f64)>);

/// A customer's parameters and arguments, checked: the purchase model,
/// Gamma-Gamma, the expected spend and the horizon in months.
struct Checked {
    purchase: Purchase,
    gg: GammaGammaParams,
    value: f64,
    horizon: u32,
}

/// The `model`'s parameters `purchase` (its struct's fields) and
/// Gamma-Gamma's `gg` (p, q, v, v_over_q) parsed and the arguments `v`
/// (frequency, recency, t, monetary_value, horizon_months,
/// monthly_discount_rate, time_units_per_month) checked: `None` when a
/// fit's parameters or the expected spend are NULL.
fn check(
    model: Model,
    purchase: &[f64],
    gg: &[f64],
    v: &[f64],
) -> std::result::Result<Option<Checked>, String> {
    // NULL parameters (a fit that did not converge) give NULL; the limits
    // of boundary fits are models of their own.
    let (Some(purchase), Some(gg)) = (Purchase::parse(model, purchase)?, gamma_gamma::params(gg)?)
    else {
        return Ok(None);
    };
    Ok(checked(&gg, v)?.map(|(value, horizon)| Checked {
        purchase,
        gg,
        value,
        horizon,
    }))
}

/// `c`, the CLV of `ch` for the arguments `v`, or an error naming the
/// model, parameters and arguments when it is not finite.
fn finite(c: f64, ch: &Checked, v: &[f64]) -> std::result::Result<f64, String> {
    if c.is_finite() {
        return Ok(c);
    }
    let (p, gg) = (ch.purchase, ch.gg);
    Err(format!(
        "CLV is {c} for {p:?}, Gamma-Gamma {gg:?} and arguments {v:?}"
    ))
}

/// The CLV under `model` ([`check`]'s arguments): `None` when a fit's
/// parameters or the expected spend are NULL; an error when not finite.
fn score(
    model: Model,
    purchase: &[f64],
    gg: &[f64],
    v: &[f64],
) -> std::result::Result<Option<f64>, String> {
    let Some(ch) = check(model, purchase, gg, v)? else {
        return Ok(None);
    };
    let c = purchase_clv(
        &ch.purchase,
        ch.value,
        [v[0], v[1], v[2], v[5], v[6]],
        ch.horizon,
    );
    finite(c, &ch, v).map(Some)
}

// BG/NBD's fields end with dropout (the one-dropout limit's, where a and b
// are NULL) and rate (the Poisson limit's, where r and alpha are NULL);
// MBG/NBD's the same; Pareto/NBD's with rate and dropout_rate (its
// one-rate and one-dropout-rate limits', where r, alpha or s, beta are NULL).
fn eval(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    score(Model::Bg, &pv[..6], &pv[6..10], v)
}

fn eval_pareto_nbd(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    score(Model::Pareto, &pv[..6], &pv[6..10], v)
}

fn eval_mbgnbd(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    score(Model::Mbg, &pv[..6], &pv[6..10], v)
}

/// The symmetric 4 x 4 matrix of the upper triangle `u` (row by row).
fn symmetric(u: &[f64]) -> [[f64; 4]; 4] {
    const PAIRS: [(usize, usize); 10] = [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 2),
        (2, 3),
        (3, 3),
    ];
    let mut c = [[f64::NAN; 4]; 4];
    for (&(i, j), v) in PAIRS.iter().zip(u) {
        c[i][j] = *v;
        c[j][i] = *v;
    }
    c
}

/// The CLV and its interval at level `v[7]` (in (0, 1); 0: no interval)
/// under `model`: `pv` are the purchase fit's parameters and the upper
/// triangle of their log covariance (14 values, the struct's order; BG/NBD's
/// and MBG/NBD's then their dropout), then Gamma-Gamma's (14). `None` when the CLV is NULL; the interval `None`
/// when a fit has no covariance, the level is 0, or the interval is
/// unbounded.
fn clv_interval(
    model: Model,
    pv: &[f64],
    v: &[f64],
) -> std::result::Result<Option<WithInterval>, String> {
    let level = v[7];
    if !(level == 0.0 || (level > 0.0 && level < 1.0)) {
        return Err(format!(
            "interval must be in (0, 1), e.g. 0.9, or 0 for none, got {level}"
        ));
    }
    // BG/NBD's and MBG/NBD's purchase fields end with dropout after the
    // covariances (the one-dropout limit's, where a and b are NULL) and
    // rate (the Poisson limit's, where r and alpha are NULL); Pareto/NBD's
    // with rate and dropout_rate (its two limits').
    let d = 2;
    let purchase = [pv[0], pv[1], pv[2], pv[3], pv[14], pv[14 + d / 2]];
    let g = 14 + d;
    let Some(ch) = check(model, &purchase[..4 + d], &pv[g..g + 4], &v[..7])? else {
        return Ok(None);
    };
    let (p, [x, tx, t, m, _, rate, per_month]) =
        (&ch.purchase, [v[0], v[1], v[2], v[3], v[4], v[5], v[6]]);
    if level == 0.0 {
        let c = purchase_clv(p, ch.value, [x, tx, t, rate, per_month], ch.horizon);
        return Ok(Some((finite(c, &ch, v)?, None)));
    }
    // One look-up for S and its gradient, one P(alive) for the CLV and
    // its gradient: the same numbers as clv's and log_clv_gradient's.
    let (s, s_gradient) = sum_and_gradient(p, [x, t, rate, per_month], ch.horizon);
    let alive = p.p_alive(x, tx, t);
    let c = finite(clv_of(ch.value, alive, s), &ch, v)?;
    let gradient = gradient_at(p, &ch.gg, s_gradient, alive, [x, tx, t, m]);
    let (cov, gg_cov) = (symmetric(&pv[4..14]), symmetric(&pv[g + 4..g + 14]));
    let sd = log_sd(&gradient, &cov, &gg_cov);
    // A CLV of 0 (spend clamped) is 0 whatever the parameters; an upper end
    // beyond the largest double (sd of ln CLV in the hundreds: a fit that
    // pins a parameter down only barely, on a few dozen customers) is an
    // unbounded interval, published as NULL, never as infinity.
    let interval = sd.and_then(|sd| match log_normal_interval(c, sd, level) {
        _ if c == 0.0 => Some((0.0, 0.0)),
        (low, high) if high.is_finite() => Some((low, high)),
        _ => None,
    });
    Ok(Some((c, interval)))
}

/// [`clv_interval`] as the struct (clv, low, high).
fn interval_struct(
    model: Model,
    pv: &[f64],
    v: &[f64],
    out: &mut [Option<f64>],
) -> std::result::Result<bool, String> {
    let Some((c, interval)) = clv_interval(model, pv, v)? else {
        return Ok(false);
    };
    out[0] = Some(c);
    out[1] = interval.map(|i| i.0);
    out[2] = interval.map(|i| i.1);
    Ok(true)
}

fn eval_interval(
    pv: &[f64],
    v: &[f64],
    out: &mut [Option<f64>],
) -> std::result::Result<bool, String> {
    interval_struct(Model::Bg, pv, v, out)
}

fn eval_pareto_nbd_interval(
    pv: &[f64],
    v: &[f64],
    out: &mut [Option<f64>],
) -> std::result::Result<bool, String> {
    interval_struct(Model::Pareto, pv, v, out)
}

fn eval_mbgnbd_interval(
    pv: &[f64],
    v: &[f64],
    out: &mut [Option<f64>],
) -> std::result::Result<bool, String> {
    interval_struct(Model::Mbg, pv, v, out)
}

fn eval_low(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    Ok(clv_interval(Model::Bg, pv, v)?
        .and_then(|(_, i)| i)
        .map(|(low, _)| low))
}

fn eval_high(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    Ok(clv_interval(Model::Bg, pv, v)?
        .and_then(|(_, i)| i)
        .map(|(_, high)| high))
}

/// The fields of a purchase fit's struct the interval functions read: the
/// parameters `names` and the covariances of their logs (`cov_<p>_<q>`,
/// p <= q in order), as `bgnbd_fit`, `pareto_nbd_fit`, `mbgnbd_fit`
/// return them.
macro_rules! uncertain {
    ($p:literal, $q:literal, $s:literal, $t:literal) => {
        &[
            $p,
            $q,
            $s,
            $t,
            concat!("cov_", $p, "_", $p),
            concat!("cov_", $p, "_", $q),
            concat!("cov_", $p, "_", $s),
            concat!("cov_", $p, "_", $t),
            concat!("cov_", $q, "_", $q),
            concat!("cov_", $q, "_", $s),
            concat!("cov_", $q, "_", $t),
            concat!("cov_", $s, "_", $s),
            concat!("cov_", $s, "_", $t),
            concat!("cov_", $t, "_", $t),
        ]
    };
}

/// The BG/NBD and MBG/NBD fields the interval functions read: as
/// [`uncertain!`], then `dropout` (the one-dropout limit's, where a and b
/// are NULL; optional).
const BG_UNCERTAIN: &[&str] = &concat_fields::<15>(uncertain!("r", "alpha", "a", "b"), "dropout?");

/// The BG/NBD fields the interval functions read: [`BG_UNCERTAIN`], then
/// `rate` (the Poisson limit's, where r, alpha and b are NULL; optional).
const BGNBD_UNCERTAIN: &[&str] = &concat_fields::<16>(BG_UNCERTAIN, "rate?");

/// `names` and one more, as a constant array.
const fn concat_fields<const N: usize>(
    names: &[&'static str],
    last: &'static str,
) -> [&'static str; N] {
    let mut out = [last; N];
    let mut i = 0;
    while i < names.len() && i + 1 < N {
        out[i] = names[i];
        i += 1;
    }
    out
}

/// The Pareto/NBD fields the interval functions read: as [`uncertain!`],
/// then `rate` (the one-rate limit's, where r and alpha are NULL) and
/// `dropout_rate` (the one-dropout-rate limit's, where s and beta are
/// NULL), both optional.
const PARETO_UNCERTAIN: &[&str] = &concat_fields::<16>(
    &concat_fields::<15>(uncertain!("r", "alpha", "s", "beta"), "rate?"),
    "dropout_rate?",
);

/// The Gamma-Gamma fields the interval functions read (`gamma_gamma_fit`).
const GG_UNCERTAIN: &[&str] = uncertain!("p", "q", "v", "v_over_q");

/// The arguments of the CLV functions.
const ARGS: &[&str] = &[
    "frequency",
    "recency",
    "t",
    "monetary_value",
    "horizon_months",
    "monthly_discount_rate",
    "time_units_per_month",
];

/// The arguments of the interval functions: [`ARGS`] and the level.
const INTERVAL_ARGS: &[&str] = &[
    "frequency",
    "recency",
    "t",
    "monetary_value",
    "horizon_months",
    "monthly_discount_rate",
    "time_units_per_month",
    "interval",
];

/// The fields of the interval functions' struct.
const INTERVAL_FIELDS: &[&str] = &["clv", "low", "high"];

/// The SQL functions.
pub fn functions() -> Vec<Function> {
    const INTERVAL: &str = "clv and the ends of its interval (level `interval`, e.g. 0.9; 0: none, low and high NULL) over the fits' parameter uncertainty, from one evaluation: delta method on ln CLV with the fits' inverse observed information; low and high NULL without a covariance or when unbounded";
    vec![
        Function::scalar(
            "clv",
            &[("bgnbd_params", bgnbd::SCALAR_FIELDS), ("gg_params", gamma_gamma::SCALAR_FIELDS)],
            ARGS,
            eval,
            "discounted CLV over horizon_months months (lifetimes' customer_lifetime_value); time_units_per_month = 30 (days) or 4.345 (weeks)",
        ),
        Function::scalar(
            "pareto_nbd_clv",
            &[("pareto_nbd_params", pareto_nbd::SCALAR_FIELDS), ("gg_params", gamma_gamma::SCALAR_FIELDS)],
            ARGS,
            eval_pareto_nbd,
            "clv with Pareto/NBD expected purchases",
        ),
        Function::scalar(
            "mbgnbd_clv",
            &[("mbgnbd_params", mbgnbd::SCALAR_FIELDS), ("gg_params", gamma_gamma::SCALAR_FIELDS)],
            ARGS,
            eval_mbgnbd,
            "clv with MBG/NBD expected purchases",
        ),
        Function::scalar_struct(
            "clv_interval",
            &[("bgnbd_fit", BGNBD_UNCERTAIN), ("gg_fit", GG_UNCERTAIN)],
            INTERVAL_ARGS,
            INTERVAL_FIELDS,
            eval_interval,
            INTERVAL,
        ),
        Function::scalar_struct(
            "pareto_nbd_clv_interval",
            &[("pareto_nbd_fit", PARETO_UNCERTAIN), ("gg_fit", GG_UNCERTAIN)],
            INTERVAL_ARGS,
            INTERVAL_FIELDS,
            eval_pareto_nbd_interval,
            "clv_interval with Pareto/NBD expected purchases",
        ),
        Function::scalar_struct(
            "mbgnbd_clv_interval",
            &[("mbgnbd_fit", BGNBD_UNCERTAIN), ("gg_fit", GG_UNCERTAIN)],
            INTERVAL_ARGS,
            INTERVAL_FIELDS,
            eval_mbgnbd_interval,
            "clv_interval with MBG/NBD expected purchases",
        ),
        Function::scalar(
            "clv_low",
            &[("bgnbd_fit", BGNBD_UNCERTAIN), ("gg_fit", GG_UNCERTAIN)],
            INTERVAL_ARGS,
            eval_low,
            "lower end of clv_interval under BG/NBD (one end: clv_interval gives both from one evaluation)",
        ),
        Function::scalar(
            "clv_high",
            &[("bgnbd_fit", BGNBD_UNCERTAIN), ("gg_fit", GG_UNCERTAIN)],
            INTERVAL_ARGS,
            eval_high,
            "upper end of clv_interval under BG/NBD (see clv_low)",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BG/NBD gradient of ln CLV as main had it at 564c333 (before the
    /// generic purchase model), verbatim but for the memoized S it reads,
    /// which is the point CLV's: what the new path must reproduce.
    mod old {
        use crate::numeric::memo;
        use crate::udf::bgnbd::{self, BgNbdParams};
        use crate::udf::gamma_gamma::GammaGammaParams;

        fn discounted_sum_raw(
            bg: &BgNbdParams,
            x: f64,
            t: f64,
            horizon: u32,
            rate: f64,
            per_month: f64,
        ) -> f64 {
            let mut total = 0.0;
            let mut prev = 0.0;
            for m in 1..=horizon {
                let e = bgnbd::conditional_bracket(bg, m as f64 * per_month, x, t);
                total += (e - prev) / (1.0 + rate).powi(m as i32);
                prev = e;
            }
            total
        }

        /// Step of the forward differences of ln S in the log parameters: S is
        /// accurate to about 1e-12 relative, so the derivative is to about 1e-6
        /// (rounding) plus h times the second derivative (about 1e-6): far below
        /// what a standard error needs. Forward rather than central differences:
        /// S itself is at hand, so the gradient costs 4 more S per (x, T) instead
        /// of 8 (the interval's cost is these evaluations).
        const LOG_STEP: f64 = 1e-6;

        /// d ln S(x, T) / d(ln r, ln alpha, ln a, ln b) by forward differences,
        /// memoized per thread like S; 0 for a parameter at its bound (a = 0, and
        /// b, which has no effect there).
        fn log_sum_gradient(
            bg: &BgNbdParams,
            x: f64,
            t: f64,
            horizon: u32,
            rate: f64,
            per_month: f64,
        ) -> [f64; 4] {
            thread_local! {
                static MEMO: memo::MemoOf<9, [f64; 4]> = memo::MemoOf::default();
            }
            let key = [
                bg.r.to_bits(),
                bg.alpha.to_bits(),
                bg.a.to_bits(),
                bg.b.to_bits(),
                x.to_bits(),
                t.to_bits(),
                u64::from(horizon),
                rate.to_bits(),
                per_month.to_bits(),
            ];
            memo::memoized(&MEMO, key, || {
                let at = |k: usize, step: f64| {
                    let mut v = [bg.r, bg.alpha, bg.a, bg.b];
                    v[k] *= step.exp();
                    let p = BgNbdParams {
                        r: v[0],
                        alpha: v[1],
                        a: v[2],
                        b: v[3],
                    };
                    discounted_sum_raw(&p, x, t, horizon, rate, per_month)
                };
                let free = if bg.a == 0.0 { 2 } else { 4 };
                let base = super::super::discounted_sum(
                    &super::super::Purchase::Bg(*bg),
                    [x, t, rate, per_month],
                    horizon,
                );
                let mut g = [0.0; 4];
                for (k, gk) in g.iter_mut().enumerate().take(free) {
                    let up = at(k, LOG_STEP);
                    *gk = if up > 0.0 && base > 0.0 {
                        (up / base).ln() / LOG_STEP
                    } else {
                        0.0
                    };
                }
                g
            })
        }

        /// d ln P(alive) / d(ln r, ln alpha, ln a, ln b): P = 1 / (1 + O) with O
        /// the odds of having dropped out, so the gradient is -(1 - P) d ln O,
        /// ln O = ln a - ln(b+x-1) + (r+x) (ln(alpha+T) - ln(alpha+t_x)) (Hardie,
        /// note 021). 0 for one-time buyers and in the NBD limit (P = 1).
        fn log_p_alive_gradient(bg: &BgNbdParams, x: f64, tx: f64, t: f64) -> [f64; 4] {
            if x <= 0.0 || bg.a == 0.0 {
                return [0.0; 4];
            }
            let BgNbdParams { r, alpha, a: _, b } = *bg;
            let dead = 1.0 - bgnbd::p_alive(bg, x, tx, t);
            let d_ln_odds = [
                r * ((alpha + t).ln() - (alpha + tx).ln()),
                (r + x) * alpha * (1.0 / (alpha + t) - 1.0 / (alpha + tx)),
                1.0,
                -b / (b + x - 1.0),
            ];
            d_ln_odds.map(|d| -dead * d)
        }

        /// The gradient of ln CLV in the log parameters of the two fits, (r,
        /// alpha, a, b) and (p, q, v, v_over_q): ln CLV is ln E[M] plus
        /// ln P(alive) plus ln S(x, T); P and E are differentiated analytically,
        /// S by forward differences per (x, T), memoized.
        #[allow(clippy::too_many_arguments)]
        pub fn log_clv_gradient(
            bg: &BgNbdParams,
            gg: &GammaGammaParams,
            x: f64,
            tx: f64,
            t: f64,
            m: f64,
            horizon_months: u32,
            monthly_discount_rate: f64,
            time_units_per_month: f64,
        ) -> ([f64; 4], [f64; 4]) {
            let s = log_sum_gradient(
                bg,
                x,
                t,
                horizon_months,
                monthly_discount_rate,
                time_units_per_month,
            );
            let p = log_p_alive_gradient(bg, x, tx, t);
            let g_bg = [s[0] + p[0], s[1] + p[1], s[2] + p[2], s[3] + p[3]];
            (g_bg, super::super::log_value_gradient(gg, x, m))
        }
    }

    /// At a boundary (BG/NBD's a = 0) the bounded parameters' covariance is
    /// NaN and their gradient 0: the form is the free block's. A NaN entry
    /// under a non-zero gradient, or a NaN gradient, is undefined (NULL
    /// interval), never a 0 variance. Expected values by hand.
    #[test]
    fn quadratic_form_skips_only_fixed_parameters() {
        let n = f64::NAN;
        let c = [
            [0.04, 0.01, n, n],
            [0.01, 0.09, n, n],
            [n, n, n, n],
            [n, n, n, n],
        ];
        // g' C g = 4 * 0.04 + 2 * 2 * 1 * 0.01 + 1 * 0.09 = 0.29
        let v = quadratic_form(&[2.0, 1.0, 0.0, 0.0], &c).unwrap();
        assert!((v - 0.29).abs() < 1e-15, "{v}");
        assert_eq!(quadratic_form(&[2.0, 1.0, 0.5, 0.0], &c), None);
        assert_eq!(quadratic_form(&[n, 1.0, 0.0, 0.0], &c), None);
    }
    use crate::generate::{GenerateOptions, Population};
    use crate::numeric::special::normal_quantile;
    use rand::SeedableRng;

    const BG: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn undiscounted_clv_is_value_times_expected_purchases() {
        // Telescoping sum: with d = 0 the monthly increments add up to E[Y(12 u)]; 1e-9.
        let c = clv(&BG, 30.0, 2.0, 30.43, 38.86, 12, 0.0, 4.345);
        let e = bgnbd::expected_purchases(&BG, 12.0 * 4.345, 2.0, 30.43, 38.86);
        assert!((c - 30.0 * e).abs() < 1e-9, "{c} vs {}", 30.0 * e);
    }

    #[test]
    fn factored_and_memoized_clv_equals_the_monthly_sum() {
        // lifetimes' definition, term by term, against the factored form
        // value * P(alive) * S(x, T); called twice so the second call reads
        // the memo. 1e-12 relative.
        for (x, tx, t) in [(2.0, 30.43, 38.86), (0.0, 0.0, 38.86), (7.0, 35.0, 38.0)] {
            let mut want = 0.0;
            let mut prev = 0.0;
            for m in 1..=12 {
                let e = bgnbd::expected_purchases(&BG, m as f64 * 4.345, x, tx, t);
                want += 30.0 * (e - prev) / 1.01f64.powi(m);
                prev = e;
            }
            for _ in 0..2 {
                let got = clv(&BG, 30.0, x, tx, t, 12, 0.01, 4.345);
                assert!((got / want - 1.0).abs() < 1e-12, "x={x}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn matches_high_precision_references() {
        // scripts/bgnbd_reference.py (mpmath, 50 digits): CLV for an expected
        // spend of 1, including a + b < 1 for a one-time buyer and a 10-year
        // horizon with tiny alpha. Tolerance 1e-9 relative.
        let rows = crate::udf::bgnbd::tests::references("clv_per_unit");
        assert!(rows.len() >= 4);
        for v in rows {
            let bg = crate::udf::bgnbd::tests::reference_params(&v);
            let (months, x, tx, t, rate, per_month, want) =
                (v[4], v[5], v[6], v[7], v[8], v[9], v[11]);
            let got = clv(&bg, 1.0, x, tx, t, months as u32, rate, per_month);
            assert!((got / want - 1.0).abs() < 1e-9, "{v:?}: {got} vs {want}");
        }
    }

    #[test]
    fn one_time_buyer_with_a_plus_b_below_1_matches_the_case() {
        // ../shared/cases/models/one-time-buyers-a-plus-b-below-1 (README):
        // clv(bg, gg, 0, 0, 200, 0, 12, 0.01, 30) = 13.351735 at r 0.4,
        // alpha 16, a 0.35, b 0.37, p 6, q 4, v 15; 5e-7 (8 digits given).
        // The structs have no dropout, rate or v_over_q: the wrapper
        // passes them as NULL (NaN).
        let pv = [
            0.4,
            16.0,
            0.35,
            0.37,
            f64::NAN,
            f64::NAN,
            6.0,
            4.0,
            15.0,
            f64::NAN,
        ];
        let got = eval(&pv, &[0.0, 0.0, 200.0, 0.0, 12.0, 0.01, 30.0])
            .unwrap()
            .unwrap();
        assert!((got - 13.351735).abs() < 5e-7, "{got}");
    }

    #[test]
    fn a_nan_clv_is_an_error_not_zero() {
        assert!(clv(&BG, f64::NAN, 2.0, 30.43, 38.86, 12, 0.01, 4.345).is_nan());
    }

    #[test]
    fn discounting_lowers_clv() {
        let d0 = clv(&BG, 30.0, 2.0, 30.43, 38.86, 12, 0.0, 4.345);
        let d1 = clv(&BG, 30.0, 2.0, 30.43, 38.86, 12, 0.01, 4.345);
        assert!(d1 < d0 && d1 > 0.0);
    }

    #[test]
    fn days_and_weeks_agree() {
        // alpha is a time scale: the same customer in days (alpha * 7, times * 7,
        // 30 days a month vs 30/7 weeks) has the same CLV; 1e-9 relative.
        let weeks = clv(&BG, 30.0, 2.0, 30.43, 38.86, 12, 0.01, 30.0 / 7.0);
        let bg_days = BgNbdParams {
            alpha: BG.alpha * 7.0,
            ..BG
        };
        let days = clv(
            &bg_days,
            30.0,
            2.0,
            30.43 * 7.0,
            38.86 * 7.0,
            12,
            0.01,
            30.0,
        );
        assert!((weeks / days - 1.0).abs() < 1e-9, "{weeks} vs {days}");
    }

    #[test]
    fn never_negative_and_null_without_a_population_mean() {
        assert_eq!(clv(&BG, -5.0, 2.0, 30.43, 38.86, 12, 0.01, 4.345), 0.0);
        let pv = [
            0.243,
            4.414,
            0.793,
            2.426,
            f64::NAN,
            f64::NAN,
            6.25,
            0.9,
            15.44,
            f64::NAN,
        ];
        assert_eq!(
            eval(&pv, &[2.0, 30.43, 38.86, 20.0, 12.0, 0.01, 4.345]),
            Ok(None)
        );
        assert!(eval(&pv, &[-1.0, 0.0, 38.86, 20.0, 12.0, 0.01, 4.345]).is_err());
    }

    /// Customers of one synthetic shop drawn as `custval generate` draws
    /// them (`seed`, `n` customers, its default parameters, in weeks),
    /// summarised as the RFM step does: purchases on one day merged,
    /// frequency = purchase days - 1, recency and T in weeks to the end
    /// date (the as-of), monetary value the mean of the repeat days.
    /// Rows (x, t_x, T, m).
    fn shop(opts: &GenerateOptions) -> Vec<(f64, f64, f64, f64)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let population = Population::new(opts).unwrap();
        let end = crate::job::epoch_day(opts.end);
        (0..opts.customers)
            .map(|_| {
                let mut days: Vec<(i64, f64)> = Vec::new();
                population
                    .draw_customer(&mut rng, |day, amount, _| {
                        match days.last_mut() {
                            Some(last) if last.0 == day => last.1 += amount,
                            _ => days.push((day, amount)),
                        }
                        true
                    })
                    .unwrap();
                let x = days.len() as f64 - 1.0;
                let first = days[0].0;
                let weeks = |d: i64| d as f64 / 7.0;
                let m = if x > 0.0 {
                    days[1..].iter().map(|d| d.1).sum::<f64>() / x
                } else {
                    0.0
                };
                (
                    x,
                    weeks(days[days.len() - 1].0 - first),
                    weeks(end - first),
                    m,
                )
            })
            .collect()
    }

    /// A fit's published log covariance as a 4 x 4 array.
    fn cov4(c: &[Vec<f64>]) -> [[f64; 4]; 4] {
        let mut out = [[f64::NAN; 4]; 4];
        for (i, row) in c.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                out[i][j] = *v;
            }
        }
        out
    }

    /// Whether the `level` interval of the average 12-month CLV (delta
    /// method, the same machinery as clv_low/clv_high) over a shop's
    /// customers, at fitted parameters, covers the average at the true
    /// ones. 12 months = 52.14 weeks, undiscounted: one horizon, so the
    /// test stays fast.
    fn covers(opts: &GenerateOptions, level: f64) -> bool {
        let rows = shop(opts);
        let bg_patterns: Vec<bgnbd::Pattern> = rows
            .iter()
            .map(|&(x, tx, t, _)| bgnbd::Pattern {
                frequency: x,
                recency: tx,
                t,
                weight: 1.0,
            })
            .collect();
        let gg_patterns: Vec<gamma_gamma::Pattern> = rows
            .iter()
            .map(|&(x, _, _, m)| gamma_gamma::Pattern {
                frequency: x,
                monetary_value: m,
                weight: 1.0,
            })
            .collect();
        let (bf, gf) = (bgnbd::fit(&bg_patterns), gamma_gamma::fit(&gg_patterns));
        assert!(bf.converged && gf.converged, "{bf:?} {gf:?}");
        let (bg_cov, gg_cov) = (
            cov4(&bgnbd::published_log_cov(&bf)),
            cov4(&gamma_gamma::published_log_cov(&gf)),
        );
        let true_bg = BgNbdParams {
            r: opts.r,
            alpha: opts.alpha,
            a: opts.a,
            b: opts.b,
        };
        let true_gg = GammaGammaParams::new(opts.p, opts.q, opts.v);
        let (mut fitted, mut truth) = (0.0, 0.0);
        let mut gradient = ([0.0; 4], [0.0; 4]);
        for &(x, tx, t, m) in &rows {
            let value = |g: &GammaGammaParams| gamma_gamma::expected_value(g, x, m).unwrap();
            let c = clv(&bf.params, value(&gf.params), x, tx, t, 1, 0.0, 52.14);
            let bg = Purchase::Bg(bf.params);
            let g = log_clv_gradient(&bg, &gf.params, [x, tx, t, m, 0.0, 52.14], 1);
            for k in 0..4 {
                gradient.0[k] += c * g.0[k];
                gradient.1[k] += c * g.1[k];
            }
            fitted += c;
            truth += clv(&true_bg, value(&true_gg), x, tx, t, 1, 0.0, 52.14);
        }
        // d ln(sum c_i) = sum c_i d ln c_i / sum c_i.
        gradient.0.iter_mut().for_each(|v| *v /= fitted);
        gradient.1.iter_mut().for_each(|v| *v /= fitted);
        let sd = log_sd(&gradient, &bg_cov, &gg_cov).unwrap();
        let (low, high) = log_normal_interval(fitted, sd, level);
        low <= truth && truth <= high
    }

    #[test]
    fn the_interval_of_the_average_clv_covers_the_truth_nine_times_in_ten() {
        // Issue 15: over 200 shops of 2,000 customers drawn from known
        // parameters (custval generate's draws and defaults), the 90%
        // interval of the population-average 12-month CLV must cover its
        // value at the true parameters in 85-95% of the shops. A binomial
        // count of 200 at p = 0.9 has sd 2.1%: the band is +-2.4 sd.
        let sets = 200;
        let covered = (0..sets)
            .filter(|&seed| {
                let opts = GenerateOptions {
                    customers: 2_000,
                    seed: 1_000 + seed,
                    ..GenerateOptions::default()
                };
                covers(&opts, 0.9)
            })
            .count();
        let rate = covered as f64 / sets as f64;
        println!("coverage of the 90% interval: {covered} of {sets} shops ({rate:.3})");
        assert!((0.85..=0.95).contains(&rate), "coverage {rate}");
        // The quantile the interval uses, for the record.
        assert!((normal_quantile(0.95) - 1.644_853_6).abs() < 1e-6);
    }

    /// A purchase fit and Gamma-Gamma's on CDNOW's sample
    /// (tests/data/cdnow_sample_summary.csv, 2,357 customers, weeks), as
    /// the interval functions read them: per model the parameters and the
    /// upper triangle of their published log covariance (14 values), then
    /// Gamma-Gamma's (14).
    struct Cdnow {
        rows: Vec<(f64, f64, f64, f64)>,
        fits: Vec<(Model, Vec<f64>)>,
    }

    /// A fit's 14 values: `params` and the upper triangle of `cov` (NaN
    /// where absent).
    fn uncertain_values(params: [f64; 4], cov: &[Vec<f64>]) -> Vec<f64> {
        let at = |i: usize, j: usize| cov.get(i).and_then(|r| r.get(j)).copied();
        let triangle = (0..4).flat_map(|i| (i..4).map(move |j| (i, j)));
        let cov: Vec<f64> = triangle
            .map(|(i, j)| at(i, j).unwrap_or(f64::NAN))
            .collect();
        params.iter().copied().chain(cov).collect()
    }

    fn cdnow() -> &'static Cdnow {
        static FITS: std::sync::OnceLock<Cdnow> = std::sync::OnceLock::new();
        FITS.get_or_init(|| {
            let rows = bgnbd::tests::cdnow_summary();
            let patterns: Vec<bgnbd::Pattern> = rows
                .iter()
                .map(|&(x, tx, t, _)| bgnbd::Pattern {
                    frequency: x,
                    recency: tx,
                    t,
                    weight: 1.0,
                })
                .collect();
            let spends: Vec<gamma_gamma::Pattern> = rows
                .iter()
                .map(|&(x, _, _, m)| gamma_gamma::Pattern {
                    frequency: x,
                    monetary_value: m,
                    weight: 1.0,
                })
                .collect();
            let gf = gamma_gamma::fit(&spends);
            let g = gf.params;
            let gg = uncertain_values(
                [g.p, g.q, g.v, g.v_over_q],
                &gamma_gamma::published_log_cov(&gf),
            );
            let (bf, pf, mf) = (
                bgnbd::fit(&patterns),
                pareto_nbd::fit(&patterns),
                mbgnbd::fit(&patterns),
            );
            assert!(bf.converged && pf.converged && mf.converged && gf.converged);
            let with_gg = |model, params: [f64; 4], cov: Vec<Vec<f64>>| {
                let mut v = uncertain_values(params, &cov);
                v.extend(&gg);
                (model, v)
            };
            let fits = vec![
                with_gg(
                    Model::Bg,
                    Purchase::Bg(bf.params).values(),
                    bgnbd::published_log_cov(&bf),
                ),
                with_gg(
                    Model::Pareto,
                    Purchase::Pareto(pf.params).values(),
                    bgnbd::published_log_cov(&pf),
                ),
                with_gg(
                    Model::Mbg,
                    Purchase::Mbg(mf.params).values(),
                    bgnbd::published_log_cov(&mf),
                ),
            ];
            Cdnow { rows, fits }
        })
    }

    /// `pv` (a purchase fit's 14 values, then Gamma-Gamma's 14) in the
    /// interval functions' layout: BG/NBD's and MBG/NBD's dropout (NaN: an
    /// interior fit or a = 0) after the purchase fit's values.
    fn layout(model: Model, pv: &[f64]) -> Vec<f64> {
        let mut v = pv[..14].to_vec();
        let _ = model;
        v.extend([f64::NAN, f64::NAN]);
        v.extend(&pv[14..]);
        v
    }

    /// The interval functions' arguments for a CDNOW row: 12 months,
    /// 1% a month, weeks, level 0.9.
    fn interval_args(&(x, tx, t, m): &(f64, f64, f64, f64)) -> [f64; 8] {
        [x, tx, t, m, 12.0, 0.01, 4.345, 0.9]
    }

    #[test]
    fn bgnbd_intervals_equal_the_old_path_on_cdnow() {
        // Issue 15 item 5: the BG/NBD interval must not move beyond 1e-9
        // relative from main's (564c333, `old` above) when the purchase
        // model became generic and the interval one function. Every CDNOW
        // customer at its fits; the gradients to 1e-12 relative.
        let Cdnow { rows, fits } = cdnow();
        let pv = &fits[0].1;
        let bg = bgnbd::params(&pv[..4]).unwrap().unwrap();
        let gg = gamma_gamma::params(&pv[14..18]).unwrap().unwrap();
        let (cov, gg_cov) = (symmetric(&pv[4..14]), symmetric(&pv[18..28]));
        let mut compared = 0;
        for row in rows {
            let v = interval_args(row);
            let (c, interval) = clv_interval(Model::Bg, &layout(Model::Bg, pv), &v)
                .unwrap()
                .unwrap();
            let (x, tx, t, m) = *row;
            let was = old::log_clv_gradient(&bg, &gg, x, tx, t, m, 12, 0.01, 4.345);
            let args = [x, tx, t, m, 0.01, 4.345];
            let now = log_clv_gradient(&Purchase::Bg(bg), &gg, args, 12);
            let pairs = was.0.iter().chain(&was.1).zip(now.0.iter().chain(&now.1));
            for (a, b) in pairs {
                let close = (a - b).abs() <= 1e-12 * a.abs().max(1e-3);
                assert!(close, "{row:?}: {was:?} vs {now:?}");
            }
            let Some((low, high)) = interval else {
                panic!("{row:?}: no interval");
            };
            let sd = log_sd(&was, &cov, &gg_cov).unwrap();
            let (want_low, want_high) = log_normal_interval(c, sd, 0.9);
            if c > 0.0 {
                assert!(
                    (low / want_low - 1.0).abs() < 1e-9,
                    "{row:?}: {low} vs {want_low}"
                );
                assert!(
                    (high / want_high - 1.0).abs() < 1e-9,
                    "{row:?}: {high} vs {want_high}"
                );
                compared += 1;
            }
        }
        assert!(compared > 2_000, "{compared}");
    }

    /// Central differences of `f` in the log of each of the 4 parameters
    /// of `p`, step `h` (error h^2 times the third derivative / 6, plus
    /// rounding / h).
    fn central(p: &Purchase, h: f64, f: impl Fn(&Purchase) -> f64) -> [f64; 4] {
        std::array::from_fn(|k| {
            let (mut up, mut down) = (p.values(), p.values());
            up[k] *= h.exp();
            down[k] *= (-h).exp();
            (f(&p.with_values(up)) - f(&p.with_values(down))) / (2.0 * h)
        })
    }

    /// CDNOW-like customers of every kind (x, t_x, T, m in weeks): a
    /// one-time buyer, recent and lapsed repeat buyers, a heavy buyer,
    /// t_x = T.
    const CUSTOMERS: &[(f64, f64, f64, f64)] = &[
        (0.0, 0.0, 38.86, 0.0),
        (2.0, 30.43, 38.86, 22.35),
        (1.0, 1.71, 38.86, 11.77),
        (7.0, 35.0, 38.0, 40.0),
        (5.0, 10.0, 37.0, 25.0),
        (29.0, 75.0, 77.86, 30.0),
        (3.0, 32.0, 32.0, 15.0),
    ];

    #[test]
    fn p_alive_gradients_match_central_differences_for_every_model() {
        // The analytic d ln P(alive) / d(log parameters) of each model at
        // its CDNOW fit against central differences of the model's own
        // p_alive (step 1e-4: error about 1e-8 for these smooth functions):
        // 1e-6 relative to the gradient's largest entry. Where P = 1
        // whatever the parameters, 0 in both.
        for (model, pv) in &cdnow().fits {
            let p = Purchase::parse(*model, &pv[..4]).unwrap().unwrap();
            for &(x, tx, t, _) in CUSTOMERS {
                let got = p.log_p_alive_gradient(p.p_alive(x, tx, t), x, tx, t);
                let want = central(&p, 1e-4, |q| q.p_alive(x, tx, t).ln());
                let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                for k in 0..4 {
                    assert!(
                        (got[k] - want[k]).abs() < 1e-6 * scale,
                        "{model:?} ({x}, {tx}, {t}): {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn log_clv_gradients_match_central_differences_for_every_model() {
        // The whole gradient of ln CLV (S by forward differences, step
        // 1e-6: error about 1e-6 of the entry, see LOG_STEP) against
        // central differences of ln CLV (step 1e-4, about 1e-8) for each
        // model at its CDNOW fit: 1e-5 relative to the largest entry.
        // Gamma-Gamma's against central differences of its expected value
        // in (ln p, ln q, ln v), 1e-6 (v_over_q is derived: its entry 0).
        for (model, pv) in &cdnow().fits {
            let p = Purchase::parse(*model, &pv[..4]).unwrap().unwrap();
            let gg = gamma_gamma::params(&pv[14..18]).unwrap().unwrap();
            for &(x, tx, t, m) in CUSTOMERS {
                let value = gamma_gamma::expected_value(&gg, x, m).unwrap();
                let args = [x, tx, t, m, 0.01, 4.345];
                let (got, got_gg) = log_clv_gradient(&p, &gg, args, 12);
                let args = [x, tx, t, 0.01, 4.345];
                let want = central(&p, 1e-4, |q| purchase_clv(q, value, args, 12).ln());
                let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                for k in 0..4 {
                    assert!(
                        (got[k] - want[k]).abs() < 1e-5 * scale,
                        "{model:?} ({x}, {tx}, {t}): {got:?} vs {want:?}"
                    );
                }
                let h = 1e-4;
                let ln_value = |k: usize, step: f64| {
                    let mut v = [gg.p, gg.q, gg.v];
                    v[k] *= step.exp();
                    let g = GammaGammaParams::new(v[0], v[1], v[2]);
                    gamma_gamma::expected_value(&g, x, m).unwrap().ln()
                };
                for k in 0..3 {
                    let want = (ln_value(k, h) - ln_value(k, -h)) / (2.0 * h);
                    assert!(
                        (got_gg[k] - want).abs() < 1e-6,
                        "gg {k}: {got_gg:?} vs {want}"
                    );
                }
                assert_eq!(got_gg[3], 0.0);
            }
        }
    }

    #[test]
    fn every_models_interval_is_the_quadratic_form_by_hand() {
        // clv_interval's ends for each model at its CDNOW fit against the
        // delta method written out here: sd^2 = sum over i, j of
        // g_i C_ij g_j over both fits (independent: no cross terms; a
        // Gamma-Gamma entry undefined only under a 0 gradient), with the
        // gradient of log_clv_gradient (tested above) and the fits'
        // published covariances; z = 1.6448536269514722
        // (scipy.stats.norm.ppf(0.95)); ends clv e^(-+z sd): 1e-8 relative
        // (normal_quantile is accurate to about 1e-9 relative, which moves
        // the ends by z sd 1e-9). The interval contains the CLV, which
        // equals clv's.
        let z = 1.644_853_626_951_472_2;
        for (model, pv) in &cdnow().fits {
            let p = Purchase::parse(*model, &pv[..4]).unwrap().unwrap();
            let gg = gamma_gamma::params(&pv[14..18]).unwrap().unwrap();
            let (c1, c2) = (symmetric(&pv[4..14]), symmetric(&pv[18..28]));
            for row in CUSTOMERS {
                let v = interval_args(row);
                let (c, interval) = clv_interval(*model, &layout(*model, pv), &v)
                    .unwrap()
                    .unwrap();
                let point = score(*model, &pv[..4], &pv[14..18], &v[..7]);
                assert_eq!(c, point.unwrap().unwrap());
                let (x, tx, t, m) = *row;
                let (g1, g2) = log_clv_gradient(&p, &gg, [x, tx, t, m, 0.01, 4.345], 12);
                let mut var = 0.0;
                for i in 0..4 {
                    for j in 0..4 {
                        var += g1[i] * c1[i][j] * g1[j];
                        if g2[i] != 0.0 && g2[j] != 0.0 {
                            var += g2[i] * c2[i][j] * g2[j];
                        }
                    }
                }
                let sd = var.sqrt();
                let (low, high) = interval.unwrap();
                let (want_low, want_high) = (c * (-z * sd).exp(), c * (z * sd).exp());
                let rel = |a: f64, b: f64| (a / b - 1.0).abs();
                assert!(
                    rel(low, want_low) < 1e-8,
                    "{model:?} {row:?}: {low} vs {want_low}"
                );
                assert!(
                    rel(high, want_high) < 1e-8,
                    "{model:?} {row:?}: {high} vs {want_high}"
                );
                assert!(low < c && c < high && sd > 0.0, "{model:?} {row:?}");
            }
        }
    }

    #[test]
    fn no_dropout_limits_give_the_free_blocks_interval_and_nan_stays_null() {
        // At the boundary a = 0 (BG/NBD, MBG/NBD) or s = 0 (Pareto/NBD) the
        // fits publish the NBD limit's (r, alpha) covariance, NaN for the
        // others and b / beta NULL: the interval is the free block's,
        // g' C g over (r, alpha) plus Gamma-Gamma's, the dropout
        // parameters' gradient 0. By hand: the NBD CLV's gradient by
        // central differences here, the 2 x 2 form written out. A NaN in
        // the free block makes the interval NULL, never a number; the
        // level 0 gives the CLV without an interval; a level outside
        // (0, 1) is an error. 1e-6 relative (forward vs central
        // differences).
        let gg = &cdnow().fits[0].1[14..28];
        let gg_params = gamma_gamma::params(&gg[..4]).unwrap().unwrap();
        let nan = f64::NAN;
        let nbd_cov = [0.01, 0.005, nan, nan, 0.02, nan, nan, nan, nan, nan];
        let row = (2.0, 30.43, 38.86, 22.35);
        let v = interval_args(&row);
        for model in [Model::Bg, Model::Pareto, Model::Mbg] {
            let mut pv = vec![0.55, 10.6, 0.0, nan];
            pv.extend(nbd_cov);
            pv.extend(gg);
            let (c, interval) = clv_interval(model, &layout(model, &pv), &v)
                .unwrap()
                .unwrap();
            let p = Purchase::parse(model, &pv[..4]).unwrap().unwrap();
            let alive = p.p_alive(row.0, row.1, row.2);
            assert_eq!(p.log_p_alive_gradient(alive, row.0, row.1, row.2), [0.0; 4]);
            let value = gamma_gamma::expected_value(&gg_params, row.0, row.3).unwrap();
            let args = [row.0, row.1, row.2, 0.01, 4.345];
            let g = central(&p, 1e-4, |q| purchase_clv(q, value, args, 12).ln());
            let full = [row.0, row.1, row.2, row.3, 0.01, 4.345];
            let (_, g2) = log_clv_gradient(&p, &gg_params, full, 12);
            let var1 = g[0] * g[0] * 0.01 + 2.0 * g[0] * g[1] * 0.005 + g[1] * g[1] * 0.02;
            let var = var1 + quadratic_form(&g2, &symmetric(&gg[4..14])).unwrap();
            let (low, _) = interval.unwrap();
            let want = c * (-1.644_853_626_951_472_2 * var.sqrt()).exp();
            assert!(
                (low / want - 1.0).abs() < 1e-6,
                "{model:?}: {low} vs {want}"
            );
            let mut broken = pv.clone();
            broken[5] = nan;
            let (_, undefined) = clv_interval(model, &layout(model, &broken), &v)
                .unwrap()
                .unwrap();
            assert_eq!(undefined, None);
            let mut none = v;
            none[7] = 0.0;
            assert_eq!(
                clv_interval(model, &layout(model, &pv), &none),
                Ok(Some((c, None)))
            );
            let mut bad = v;
            bad[7] = 1.5;
            assert!(clv_interval(model, &layout(model, &pv), &bad).is_err());
        }
    }

    /// Nanoseconds this thread has run on a CPU (Linux's
    /// /proc/thread-self/schedstat, first field).
    fn cpu_ns() -> f64 {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn cost_per_customer_point_vs_interval() {
        // Issue 15 item 5's budget: the interval at no more than 3x the
        // point CLV. Prints (does not assert: a debug build on a shared
        // machine) the nanoseconds per customer of `clv` and of
        // `clv_interval` through the SQL functions' wrapper, on CDNOW
        // repeated 20 times (47,140 customers of 2,357 patterns: the
        // repeats a large shop's patterns give the memos), a first pass
        // (the memos filling: S per pattern for clv, and its gradient for
        // clv_interval, whose S the point's pass left in the memo) and a
        // second; and of main's two calls, clv_low and clv_high. CPU time
        // of this thread (the machine is shared: wall time is not the
        // function's). Asserts that what it measures is right: each interval
        // struct's clv equals clv's, and low <= clv <= high.
        use datafusion::arrow::array::{Array, AsArray, Float64Array};
        use datafusion::arrow::datatypes::{Field, Float64Type};
        use datafusion::common::config::ConfigOptions;
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
        use std::sync::Arc;
        let Cdnow { rows, fits } = cdnow();
        let pv = &fits[0].1;
        let fit_struct = |names: &[&str], values: &[f64]| {
            let fields: Vec<(&str, ScalarValue)> = names
                .iter()
                .zip(values)
                .map(|(n, v)| (*n, ScalarValue::Float64(v.is_finite().then_some(*v))))
                .collect();
            crate::udf::args::struct_scalar(&fields).unwrap()
        };
        let bg = fit_struct(BG_UNCERTAIN, &pv[..14]);
        let gg = fit_struct(GG_UNCERTAIN, &pv[14..]);
        let all: Vec<_> = (0..20).flat_map(|_| rows.iter()).collect();
        let n = all.len();
        let column = |k: usize| {
            let pick = |r: &&(f64, f64, f64, f64)| [r.0, r.1, r.2, r.3][k];
            let values = Float64Array::from_iter_values(all.iter().map(pick));
            ColumnarValue::Array(Arc::new(values))
        };
        let constant = |v: f64| ColumnarValue::Scalar(ScalarValue::Float64(Some(v)));
        let mut args = vec![
            ColumnarValue::Array(bg.to_array_of_size(n).unwrap()),
            ColumnarValue::Array(gg.to_array_of_size(n).unwrap()),
        ];
        args.extend((0..4).map(column));
        args.extend([
            constant(12.0),
            constant(0.01),
            constant(4.345),
            constant(0.9),
        ]);
        let call = |name: &str, with_level: bool| {
            let f = functions().into_iter().find(|f| f.name == name).unwrap();
            let crate::udf::Udf::Scalar(udf) = f.udf else {
                panic!("{name} is not scalar");
            };
            let args: Vec<ColumnarValue> = args[..if with_level { 10 } else { 9 }].to_vec();
            let arg_fields: Vec<_> = args
                .iter()
                .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
                .collect();
            let return_type = udf.return_type(&[]).unwrap();
            let run = || {
                let a = ScalarFunctionArgs {
                    args: args.clone(),
                    arg_fields: arg_fields.clone(),
                    number_rows: n,
                    return_field: Arc::new(Field::new(name, return_type.clone(), true)),
                    config_options: Arc::new(ConfigOptions::default()),
                };
                udf.invoke_with_args(a).unwrap().into_array(n).unwrap()
            };
            let start = cpu_ns();
            run();
            let cold = (cpu_ns() - start) / n as f64;
            let start = cpu_ns();
            let out = run();
            (out, [cold, (cpu_ns() - start) / n as f64])
        };
        let (point, point_ns) = call("clv", false);
        let (interval, interval_ns) = call("clv_interval", true);
        let (_, low_ns) = call("clv_low", true);
        let (_, high_ns) = call("clv_high", true);
        for (k, pass) in ["first pass (memos filling)", "second pass"]
            .iter()
            .enumerate()
        {
            let two = low_ns[k] + high_ns[k];
            println!(
                "CPU ns per customer (debug), {pass}: clv {:.0}, clv_interval {:.0} ({:.2}x), clv_low + clv_high {two:.0} ({:.2}x)",
                point_ns[k],
                interval_ns[k],
                interval_ns[k] / point_ns[k],
                two / point_ns[k]
            );
        }
        let point = point.as_primitive::<Float64Type>();
        let s = interval.as_struct();
        let col = |k: usize| s.column(k).as_primitive::<Float64Type>().clone();
        let (c, low, high) = (col(0), col(1), col(2));
        for i in 0..n {
            assert_eq!(c.value(i), point.value(i));
            assert!(!low.is_null(i) && low.value(i) <= c.value(i) && c.value(i) <= high.value(i));
        }
    }
}
