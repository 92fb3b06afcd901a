//! Maximum-likelihood fitting shared by every model: the parallel sum of a
//! likelihood over weighted patterns, the minimisation (multi-start,
//! staged on a sample for large data), the check that a reported optimum is
//! one, and the [`FitResult`] every fit returns.
//!
//! Every model is fitted in log-parameter space on the mean negative
//! log-likelihood per customer, so tolerances do not depend on the data's
//! size or units. A fit is reported converged only when:
//! - the optimizer met its stopping rule with a finite objective,
//! - no parameter ran off towards 0 or infinity (beyond e^±18.4 = 1e∓8 of
//!   the data's scale): that is a likelihood without an interior optimum,
//! - the Hessian there is positive definite: a flat likelihood (data that
//!   identify nothing) has a zero gradient everywhere, the start included,
//!   and must not pass for an optimum.
//!
//! A likelihood whose supremum lies on a boundary of the parameter space
//! (BG/NBD's a -> 0: nobody drops out) has no interior optimum, but a
//! legitimate limiting model. A model names such boundaries as [`Face`]s:
//! the limiting model's own likelihood over its free parameters and the
//! slope of the full likelihood moving off the face. [`minimise_faces`]
//! fits each face first (a small, well-conditioned problem), and reports a
//! boundary optimum when the limiting model's optimum is verified as
//! above, no direction off the face raises the likelihood (the slope is at
//! most [`OFF_FACE_SLOPE`]) and a short interior search finds nothing
//! better; otherwise the interior search runs as before, and the limit
//! still wins when no interior point beats it by more than rounding. This
//! costs tens of iterations where a search crawling towards the boundary in
//! log parameters took thousands.
//!
//! [`penalised`] adds the L2 penalty on log parameters (`penalizer`) to any
//! objective; with a penalty every optimum is interior and faces are not
//! tried.

use super::optim::{lbfgs, lbfgs_from, staged, Options};

/// Parameters beyond e^±LOG_BOX (1e±13) are never evaluated: the objective
/// is infinite there, so a line search backs off instead of running into
/// overflowed log-gammas (a fit once reported r = 1.8e251).
pub const LOG_BOX: f64 = 30.0;

/// A parameter beyond e^±LOG_BOUND (1e±8) at the end of a fit ran off to a
/// boundary: not an interior optimum.
pub const LOG_BOUND: f64 = 18.420_680_743_952_367;

/// Patterns at or above this count are summed on several threads.
const PARALLEL_ROWS: usize = 16_384;

/// The result of a maximum-likelihood fit.
#[derive(Debug, Clone)]
pub struct FitResult<P> {
    /// The fitted parameters, exponentiated from the log parameters; NaN for
    /// one that ran off or when nothing could be fitted.
    pub params: P,
    /// Total (weighted) log-likelihood.
    pub log_likelihood: f64,
    /// True only at a verified interior optimum (see the module docs).
    pub converged: bool,
    /// Iterations over all starts tried.
    pub iterations: usize,
    /// "converged", "boundary", or why not, for `model_fit` and the
    /// convergence gate.
    pub status: String,
    /// For a boundary optimum, which parameters are at which bound and the
    /// limiting model used (e.g. "a = 0: ..."); `None` otherwise.
    pub at_bound: Option<String>,
    /// Covariance of the log parameters (see [`Found::inverse_hessian`]):
    /// the inverse of the observed information, the Hessian of the total
    /// negative log-likelihood (penalty included) at the optimum. Of the
    /// fit's log parameters at an interior optimum, of the limiting
    /// model's free log parameters (its [`Face`]'s order) at a boundary;
    /// empty when the fit is not converged.
    pub log_cov: Vec<Vec<f64>>,
}

/// The minimum a fit found, in log-parameter space.
#[derive(Debug, Clone)]
pub struct Found {
    /// Log parameters; NaN for one that ran off beyond [`LOG_BOUND`] (its
    /// value means nothing and is not published).
    pub theta: Vec<f64>,
    /// Mean negative log-likelihood per unit of weight.
    pub mean_nll: f64,
    /// True only at a verified interior optimum (see the module docs).
    pub converged: bool,
    /// Iterations over all starts and stages tried.
    pub iterations: usize,
    /// "converged", "boundary", or why not.
    pub status: String,
    /// For a boundary optimum, the [`Face`]'s `at_bound`.
    pub at_bound: Option<String>,
    /// For a boundary optimum, the limiting model's free log parameters
    /// (the face's parameters, in its order); empty otherwise.
    pub limit: Vec<f64>,
    /// The inverse of the Hessian of the mean negative log-likelihood at a
    /// verified optimum, in the log parameters of `theta` (interior) or of
    /// `limit` (boundary); empty when not converged. Divided by the total
    /// weight it is the covariance of the maximum-likelihood estimate.
    pub inverse_hessian: Vec<Vec<f64>>,
}

impl Found {
    /// A fit that could not start: no usable data.
    pub fn nothing(n: usize, why: &str) -> Found {
        Found {
            theta: vec![f64::NAN; n],
            mean_nll: f64::NAN,
            converged: false,
            iterations: 0,
            status: why.to_string(),
            at_bound: None,
            limit: Vec::new(),
            inverse_hessian: Vec::new(),
        }
    }

    /// The [`FitResult`] with parameters made by `params` from the
    /// exponentiated log parameters and `total` the weight summed.
    pub fn result<P>(&self, total: f64, params: impl Fn(&[f64]) -> P) -> FitResult<P> {
        let natural: Vec<f64> = self.theta.iter().map(|t| t.exp()).collect();
        FitResult {
            params: params(&natural),
            log_likelihood: -self.mean_nll * total,
            converged: self.converged,
            iterations: self.iterations,
            status: self.status.clone(),
            at_bound: self.at_bound.clone(),
            log_cov: self
                .inverse_hessian
                .iter()
                .map(|row| row.iter().map(|v| v / total).collect())
                .collect(),
        }
    }
}

/// Sum `chunk`'s (log-likelihood, gradient) over `rows`, in parallel chunks
/// (at most 4 threads) added in a fixed order, so the result does not
/// depend on thread timing.
pub fn parallel_sum<R: Sync, const N: usize>(
    rows: &[R],
    chunk: impl Fn(&[R]) -> (f64, [f64; N]) + Sync,
) -> (f64, [f64; N]) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4);
    let parts: Vec<(f64, [f64; N])> = if rows.len() < PARALLEL_ROWS || threads < 2 {
        vec![chunk(rows)]
    } else {
        let size = rows.len().div_ceil(threads);
        let chunk = &chunk;
        std::thread::scope(|s| {
            let handles: Vec<_> = rows
                .chunks(size)
                .map(|c| s.spawn(move || chunk(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((f64::NAN, [f64::NAN; N])))
                .collect()
        })
    };
    let mut total = (0.0, [0.0; N]);
    for (l, g) in parts {
        total.0 += l;
        for (t, v) in total.1.iter_mut().zip(g) {
            *t += v;
        }
    }
    total
}

/// The objective, infinite outside the box of [`LOG_BOX`].
fn boxed<F: FnMut(&[f64], &mut [f64]) -> f64>(mut f: F) -> impl FnMut(&[f64], &mut [f64]) -> f64 {
    move |th: &[f64], g: &mut [f64]| {
        if th.iter().all(|v| v.abs() <= LOG_BOX) {
            f(th, g)
        } else {
            g.iter_mut().for_each(|v| *v = 0.0);
            f64::INFINITY
        }
    }
}

/// Minimise the mean negative log-likelihood `full` (objective and
/// gradient in log-parameter space) from `starts`, first on `sub` (a
/// sample) when given (see [`staged`]), and verify the optimum. `names`
/// name the parameters in messages.
pub fn minimise<F, G>(
    full: F,
    sub: Option<G>,
    starts: &[Vec<f64>],
    opts: &Options,
    names: &[&str],
) -> Found
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
    G: FnMut(&[f64], &mut [f64]) -> f64,
{
    let mut full = boxed(full);
    let sub = sub.map(boxed);
    let Some((m, iterations)) = staged(&mut full, sub, starts, opts) else {
        return Found::nothing(names.len(), "was not fitted: no start point");
    };
    conclude(&mut full, m, iterations, opts, names)
}

/// The [`Found`] of a search of `full` that ended at `m` after
/// `iterations`: not converged when the objective is not finite, a
/// parameter ran off or the stopping rule was not met; converged when the
/// point is also a verified minimum ([`verify_minimum`]), else not
/// identified.
fn conclude<F: FnMut(&[f64], &mut [f64]) -> f64>(
    full: &mut F,
    m: super::optim::Minimum,
    iterations: usize,
    opts: &Options,
    names: &[&str],
) -> Found {
    let mut found = Found {
        theta: m.x.clone(),
        mean_nll: m.f,
        converged: false,
        iterations,
        status: String::new(),
        at_bound: None,
        limit: Vec::new(),
        inverse_hessian: Vec::new(),
    };
    if !m.f.is_finite() {
        found.status = "did not converge: no start point has a finite likelihood".into();
        found.theta.iter_mut().for_each(|v| *v = f64::NAN);
        return found;
    }
    let ran_off: Vec<String> = names
        .iter()
        .zip(&m.x)
        .filter(|(_, t)| t.abs() > LOG_BOUND)
        .map(|(n, t)| format!("{n} ran off to {:.3e}", t.exp()))
        .collect();
    if !ran_off.is_empty() {
        found.status = format!(
            "did not converge: {} (the likelihood has no interior optimum)",
            ran_off.join(", ")
        );
        for t in found.theta.iter_mut() {
            if t.abs() > LOG_BOUND {
                *t = f64::NAN;
            }
        }
        return found;
    }
    if !m.converged {
        found.status = format!(
            "did not converge: stopped after {iterations} iterations with gradient {:.2e} (tolerance {:.0e})",
            m.grad_norm, opts.grad_tol
        );
        return found;
    }
    match verify_minimum(full, &m.x, names) {
        Ok(inverse) => {
            found.converged = true;
            found.status = "converged".into();
            found.inverse_hessian = inverse;
        }
        Err(why) => {
            // The data do not pin the parameters down: whatever values the
            // search stopped at are arbitrary (often the start point), so
            // they are published as NULL beside the reason, never as numbers.
            found.status = format!("is not identified: {why}");
            found.theta.iter_mut().for_each(|v| *v = f64::NAN);
        }
    }
    found
}

/// Largest slope (rise of the mean log-likelihood per customer, per unit of
/// the parameter leaving the bound) that still counts as "moving off the
/// face does not raise the likelihood". A slope d with curvature C gains
/// at most d^2 / 2C per customer off the face: 1e-4 bounds that by about
/// 5e-9 per customer for curvatures of order 1, below what the interior
/// fit's own gradient tolerance resolves.
pub const OFF_FACE_SLOPE: f64 = 1e-4;

/// Iterations of the interior search that checks a verified face: a
/// likelihood with a better interior optimum shows it within these.
const PROBE_ITERATIONS: usize = 30;

/// Iterations of the interior search from the first start that checks a
/// candidate (a verified limit with a positive slope off it), the
/// [`PROBE_ITERATIONS`] included: an interior optimum converges within
/// these (every fit of the budget test's shapes converges in under 100 in
/// all), a search crawling towards a limit no face models does not.
const CANDIDATE_PROBE_ITERATIONS: usize = 70;

/// A boundary of the parameter space where the likelihood tends to a
/// limiting model of its own (see the module docs).
pub struct Face<'a> {
    /// What is at which bound and what the limit means, for `at_bound`
    /// (e.g. "a = 0: nobody drops out (the NBD model); b has no effect").
    pub at_bound: String,
    /// Names of the limiting model's free parameters.
    pub names: &'a [&'a str],
    /// Start points of the limiting model, in its log parameters.
    pub starts: Vec<Vec<f64>>,
    /// The limiting model's mean negative log-likelihood and its gradient
    /// in its log parameters: the full objective's limit on the face.
    pub objective: &'a dyn Fn(&[f64], &mut [f64]) -> f64,
    /// The largest slope of the mean log-likelihood leaving the face, at
    /// the limiting model's log parameters given (over every direction
    /// off it, per unit of the parameter leaving its bound).
    pub off_face: &'a dyn Fn(&[f64]) -> f64,
    /// The full log parameters of a point of the face: -inf for one at 0,
    /// +inf at infinity, NaN for one the limit does not depend on.
    pub embed: &'a dyn Fn(&[f64]) -> Vec<f64>,
}

/// How much better (relative, per customer) than a face's limit an
/// interior point the search could not verify may be while the limit
/// still wins: the interior search fails as "flat" when its weakest
/// curvature is below 1e-8 of the largest (about 1 to 100 per customer for
/// these models), which is a likelihood within about 1e-6 per customer of
/// the limit along that direction; the data cannot tell them apart.
const FLAT_GAIN: f64 = 1e-6;

/// A verified interior optimum beats a face's limit when better by more
/// than rounding (relative).
const ROUNDING: f64 = 1e-12;

/// [`minimise`], trying each of `faces` first. The first face whose
/// limiting model is a verified optimum from which no direction raises
/// the likelihood (slope at most [`OFF_FACE_SLOPE`]), and which a short
/// interior search from the first start does not beat, is the result
/// ("boundary", converged). A verified limit with a positive slope off it
/// is kept as a candidate. The best candidate is the result when an
/// interior search from the first start ([`CANDIDATE_PROBE_ITERATIONS`]) neither
/// converges to a point better than it (by [`ROUNDING`]) nor gets better
/// than it by [`FLAT_GAIN`]; otherwise the full interior search runs, and
/// the candidate is still the result when that finds no verified optimum
/// better than it by [`ROUNDING`] and no unverified point better by
/// [`FLAT_GAIN`]. Either way its `at_bound` says how much better the best
/// interior point found is. Why the short search: the slope off a face is
/// a score, and with a heavy-tailed one a few customers make it large
/// while the gain it promises stays within [`FLAT_GAIN`]. On issue 17's
/// no-dropout shop at 1M customers BG/NBD's Poisson limit had slope 5.8e4
/// off it, the likelihood's supremum lies at a further corner (one rate,
/// and a, b -> 0 with a/b about 7e-7) only 0.57 better in total, and the
/// full interior search crawled towards it for 2,178 iterations (278 s).
/// Iterations count every search.
pub fn minimise_faces<F, G>(
    full: F,
    sub: Option<G>,
    starts: &[Vec<f64>],
    opts: &Options,
    names: &[&str],
    faces: &[Face],
) -> Found
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
    G: FnMut(&[f64], &mut [f64]) -> f64,
{
    let mut full = boxed(full);
    let mut spent = 0;
    let mut candidate: Option<Found> = None;
    // The short interior search from the first start, run once and shared
    // by every face's check and the candidate's.
    let mut probed: Option<super::optim::Minimum> = None;
    for face in faces {
        match on_face(&mut full, starts, opts, face, &mut probed) {
            OnFace::Optimum(found) => {
                return Found {
                    iterations: found.iterations + spent,
                    ..found
                }
            }
            OnFace::Candidate(found) => {
                spent += found.iterations;
                if candidate
                    .as_ref()
                    .is_none_or(|c| found.mean_nll < c.mean_nll)
                {
                    candidate = Some(found);
                }
            }
            OnFace::Nothing(it) => spent += it,
        }
    }
    if let Some(c) = &candidate {
        let (decided, it) = check_candidate(&mut full, c, starts, opts, names, &mut probed);
        spent += it;
        if let Some(found) = decided {
            return Found {
                iterations: spent + found.iterations,
                ..found
            };
        }
    }
    let found = minimise(full, sub, starts, opts, names);
    let iterations = found.iterations + spent;
    let beaten = |c: &Found| {
        let scale = c.mean_nll.abs().max(1.0);
        let by = c.mean_nll - found.mean_nll;
        if found.converged {
            by > ROUNDING * scale
        } else {
            !(by <= FLAT_GAIN * scale)
        }
    };
    match candidate {
        Some(c) if !beaten(&c) => {
            let by = c.mean_nll - found.mean_nll;
            let searched = format!(
                "the interior search, which {}",
                found.status.trim_start_matches("did not converge: ")
            );
            accept(c, by, &searched, iterations)
        }
        _ => Found {
            iterations,
            ..found
        },
    }
}

/// The candidate check of [`minimise_faces`] for the best candidate `c`:
/// `Some` result when it decides (`c` accepted, or an interior optimum
/// the check's search verified; their `iterations` are 0), `None` when
/// the full interior search must decide; with the iterations it spent.
fn check_candidate<F: FnMut(&[f64], &mut [f64]) -> f64>(
    full: &mut F,
    c: &Found,
    starts: &[Vec<f64>],
    opts: &Options,
    names: &[&str],
    probed: &mut Option<super::optim::Minimum>,
) -> (Option<Found>, usize) {
    let mut spent = 0;
    let Some((mut p, it)) = probe(full, starts, opts, probed) else {
        return (
            Some(accept(
                c.clone(),
                f64::NAN,
                "no interior search (no start)",
                0,
            )),
            0,
        );
    };
    spent += it;
    if !p.converged && p.f.is_finite() {
        // The short search goes on to CANDIDATE_PROBE_ITERATIONS in all:
        // an interior optimum better than the candidate by less than
        // FLAT_GAIN (700,000 distinct patterns: 9e-8 relative better
        // than one dropout probability) converges within them, a crawl
        // towards a further limit does not.
        let more = Options {
            max_iter: CANDIDATE_PROBE_ITERATIONS - PROBE_ITERATIONS,
            ..opts.clone()
        };
        let q = lbfgs(&mut *full, &p.x, &more);
        spent += q.iterations;
        p = super::optim::Minimum {
            iterations: p.iterations + q.iterations,
            ..q
        };
    }
    let scale = c.mean_nll.abs().max(1.0);
    let by = c.mean_nll - p.f;
    let settled = p.converged && by > ROUNDING * scale;
    if settled {
        // An interior optimum better than the candidate: verified here
        // as the full search would (which would only find it again).
        let found = conclude(full, p.clone(), 0, opts, names);
        if found.converged {
            return (Some(found), spent);
        }
    }
    // Otherwise a point better by at most FLAT_GAIN, converged or not,
    // that is no verified optimum: the data cannot tell it from the
    // limit (as after the full search of minimise_faces).
    if p.f.is_finite() && !(by > FLAT_GAIN * scale) {
        let searched = format!("an interior search of {} iterations", p.iterations);
        return (Some(accept(c.clone(), by, &searched, 0)), spent);
    }
    (None, spent)
}

/// The candidate `c` as the result, after `iterations` in all: its
/// `at_bound` says that `searched` found no interior point better than it
/// by more than [`FLAT_GAIN`], and by how much (`by`, mean log-likelihood
/// per customer, <= 0 when none was better) the best one was.
fn accept(c: Found, by: f64, searched: &str, iterations: usize) -> Found {
    let at_bound = c.at_bound.map(|b| {
        let best = if by > 0.0 {
            format!(
                "its best point is {by:.1e} per customer better ({:.1e} relative)",
                by / c.mean_nll.abs().max(1.0)
            )
        } else {
            "none was better".to_string()
        };
        format!("{b}; no interior point is better by more than {FLAT_GAIN:.0e} relative ({searched}: {best})")
    });
    Found {
        iterations,
        at_bound,
        ..c
    }
}

/// What a face holds (see [`minimise_faces`]).
enum OnFace {
    /// A verified boundary optimum.
    Optimum(Found),
    /// A verified limit with a positive slope off it (or beaten by the
    /// probe): the result only if the interior holds nothing better.
    Candidate(Found),
    /// No verified limit; the iterations spent.
    Nothing(usize),
}

/// Iterations a face's search may spend over all its starts: a limiting
/// model has at most three parameters and a well-conditioned likelihood,
/// so its optimum, when it has one, is found in a few dozen; a limit whose
/// own parameters run off (a further limit, or data it cannot describe)
/// would otherwise spend the optimizer's whole allowance per start.
const FACE_ITERATIONS: usize = 60;

/// Iterations of a face's search between checks that its parameters are
/// still within [`LOG_BOUND`] (a search in chunks with its curvature kept
/// takes the same steps as one run).
const FACE_CHUNK: usize = 10;

/// Multi-start on a face within [`FACE_ITERATIONS`] in all: each start
/// gets what the earlier ones left, and the search stops at the first
/// start whose parameters leave [`LOG_BOUND`] (the face's own supremum is
/// then at a further limit, a face of its own: not a verified optimum of
/// this one). Returns the best result (a converged one within the bound
/// over the others, then the lowest objective) and the iterations spent;
/// `None` without starts.
fn face_search<F: FnMut(&[f64], &mut [f64]) -> f64>(
    f: &mut F,
    starts: &[Vec<f64>],
    opts: &Options,
) -> Option<(super::optim::Minimum, usize)> {
    let mut best: Option<super::optim::Minimum> = None;
    let mut spent = 0;
    for x0 in starts {
        let mut curvature = super::optim::Curvature::default();
        let mut x = x0.clone();
        let (m, ran_off) = loop {
            let left = FACE_ITERATIONS.saturating_sub(spent);
            let chunk = Options {
                max_iter: left.min(FACE_CHUNK),
                ..opts.clone()
            };
            let m = lbfgs_from(&mut *f, &x, &chunk, &mut curvature);
            spent += m.iterations;
            let ran_off = m.x.iter().any(|v| v.abs() > LOG_BOUND);
            let done = m.converged || m.iterations < chunk.max_iter;
            if done || ran_off || spent >= FACE_ITERATIONS {
                break (m, ran_off);
            }
            x = m.x;
        };
        let mut m = m;
        m.converged = m.converged && m.f.is_finite() && !ran_off;
        let better = best.as_ref().is_none_or(|b| {
            (m.converged && !b.converged) || (m.converged == b.converged && m.f < b.f)
        });
        if better {
            best = Some(m);
        }
        let converged = best.as_ref().is_some_and(|b| b.converged);
        if converged || ran_off || spent >= FACE_ITERATIONS {
            break;
        }
    }
    best.map(|b| (b, spent))
}

/// The short interior search from the first start ([`PROBE_ITERATIONS`]),
/// run on the first call and kept in `probed`; with the iterations this
/// call spent (0 when it was kept). `None` without starts.
fn probe<F: FnMut(&[f64], &mut [f64]) -> f64>(
    full: &mut F,
    starts: &[Vec<f64>],
    opts: &Options,
    probed: &mut Option<super::optim::Minimum>,
) -> Option<(super::optim::Minimum, usize)> {
    if let Some(p) = probed {
        return Some((p.clone(), 0));
    }
    let x0 = starts.first()?;
    let short = Options {
        max_iter: PROBE_ITERATIONS,
        ..opts.clone()
    };
    let p = lbfgs(&mut *full, x0, &short);
    *probed = Some(p.clone());
    let it = p.iterations;
    Some((p, it))
}

/// The boundary optimum on `face`, a candidate, or nothing; `probed` as
/// in [`probe`].
fn on_face<F: FnMut(&[f64], &mut [f64]) -> f64>(
    full: &mut F,
    starts: &[Vec<f64>],
    opts: &Options,
    face: &Face,
    probed: &mut Option<super::optim::Minimum>,
) -> OnFace {
    let mut limit = boxed(|th: &[f64], g: &mut [f64]| (face.objective)(th, g));
    let Some((m, mut spent)) = face_search(&mut limit, &face.starts, opts) else {
        return OnFace::Nothing(0);
    };
    let inverse = match verify_minimum(&mut limit, &m.x, face.names) {
        Ok(inverse) if m.converged => inverse,
        _ => return OnFace::Nothing(spent),
    };
    let slope = (face.off_face)(&m.x);
    let mut optimum = slope <= OFF_FACE_SLOPE;
    if optimum {
        if let Some((p, it)) = probe(full, starts, opts, probed) {
            spent += it;
            // Better than the face's supremum by more than rounding: an
            // interior optimum elsewhere, which the full search will find.
            optimum = p.f >= m.f - ROUNDING * m.f.abs().max(1.0);
        }
    }
    let found = Found {
        theta: (face.embed)(&m.x),
        mean_nll: m.f,
        converged: true,
        iterations: spent,
        status: "boundary".into(),
        at_bound: Some(format!(
            "{} (slope off it {slope:.1e} per customer)",
            face.at_bound
        )),
        limit: m.x,
        inverse_hessian: inverse,
    };
    if optimum {
        OnFace::Optimum(found)
    } else {
        OnFace::Candidate(found)
    }
}

/// `f` plus the L2 penalty `penalizer * sum((theta_i - centre_i)^2)` on
/// the log parameters (and its gradient): `centre` is the log of each
/// parameter's natural unit (0 for unit-free ones), so the penalty shrinks
/// every parameter towards its unit and does not depend on the units of
/// money or time. A penalizer of 0 returns `f`'s values unchanged.
pub fn penalised<'a, F: FnMut(&[f64], &mut [f64]) -> f64 + 'a>(
    mut f: F,
    penalizer: f64,
    centre: &'a [f64],
) -> impl FnMut(&[f64], &mut [f64]) -> f64 + 'a {
    move |th: &[f64], g: &mut [f64]| {
        let v = f(th, g);
        if penalizer == 0.0 {
            return v;
        }
        let mut pen = 0.0;
        for ((t, c), gi) in th.iter().zip(centre).zip(g.iter_mut()) {
            pen += (t - c) * (t - c);
            *gi += 2.0 * penalizer * (t - c);
        }
        v + penalizer * pen
    }
}

/// Check that `x` is a strict local minimum of `f`: the Hessian (central
/// differences of the analytic gradient, step 1e-4 in log parameters) is
/// positive definite, each Cholesky pivot above 1e-8 of the largest
/// diagonal entry. Rounding noise of a flat direction is about 1e-12 of it;
/// the weakest direction a real fit has is orders of magnitude above 1e-8.
/// At a verified minimum, returns the inverse of that Hessian (from its
/// Cholesky factor), which the fits turn into standard errors.
pub fn verify_minimum<F: FnMut(&[f64], &mut [f64]) -> f64>(
    f: &mut F,
    x: &[f64],
    names: &[&str],
) -> Result<Vec<Vec<f64>>, String> {
    let n = x.len();
    let h = 1e-4;
    let mut hess = vec![vec![0.0; n]; n];
    let (mut up, mut dn) = (vec![0.0; n], vec![0.0; n]);
    let mut xs = x.to_vec();
    for i in 0..n {
        xs[i] = x[i] + h;
        let fu = f(&xs, &mut up);
        xs[i] = x[i] - h;
        let fd = f(&xs, &mut dn);
        xs[i] = x[i];
        if !(fu.is_finite() && fd.is_finite()) {
            return Err(format!(
                "the likelihood is not finite next to the optimum in {}",
                names[i]
            ));
        }
        for j in 0..n {
            hess[i][j] = (up[j] - dn[j]) / (2.0 * h);
        }
    }
    let scale = (0..n).fold(0.0f64, |m, i| m.max(hess[i][i].abs()));
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(format!(
            "the likelihood is flat in {} (the data carry no information on them)",
            names.join(", ")
        ));
    }
    // Cholesky of the symmetrised Hessian.
    let mut l = vec![vec![0.0; n]; n];
    for j in 0..n {
        let mut d = hess[j][j];
        d -= l[j][..j].iter().map(|v| v * v).sum::<f64>();
        if !(d > 1e-8 * scale) {
            return Err(format!(
                "the likelihood is flat along {} at the optimum (the data carry no information on it)",
                names[j]
            ));
        }
        l[j][j] = d.sqrt();
        for i in j + 1..n {
            let mut v = 0.5 * (hess[i][j] + hess[j][i]);
            v -= l[i][..j]
                .iter()
                .zip(&l[j][..j])
                .map(|(p, q)| p * q)
                .sum::<f64>();
            l[i][j] = v / l[j][j];
        }
    }
    Ok(cholesky_inverse(&l))
}

/// The inverse of L L' from the lower-triangular Cholesky factor L: with
/// M = L^-1 (forward substitution), (L L')^-1 = M' M.
fn cholesky_inverse(l: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = l.len();
    // cols[c]: column c of L^-1, by forward substitution.
    let cols: Vec<Vec<f64>> = (0..n)
        .map(|c| {
            let mut col = vec![0.0; n];
            for i in c..n {
                let rhs = if i == c { 1.0 } else { 0.0 };
                let s: f64 = (c..i).map(|k| l[i][k] * col[k]).sum();
                col[i] = (rhs - s) / l[i][i];
            }
            col
        })
        .collect();
    // (M' M)[i][j] = sum_k M[k][i] M[k][j] = column i . column j.
    cols.iter()
        .map(|a| {
            cols.iter()
                .map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quadratic(x: &[f64], g: &mut [f64], weights: &[f64]) -> f64 {
        let mut s = 0.0;
        for i in 0..x.len() {
            let d = x[i] - 0.5;
            s += weights[i] * d * d;
            g[i] = 2.0 * weights[i] * d;
        }
        s
    }

    #[test]
    fn a_strict_minimum_is_converged() {
        let starts = vec![vec![0.0, 0.0]];
        let f = |x: &[f64], g: &mut [f64]| quadratic(x, g, &[1.0, 3.0]);
        let found = minimise(
            f,
            None::<fn(&[f64], &mut [f64]) -> f64>,
            &starts,
            &Options::default(),
            &["u", "w"],
        );
        assert!(found.converged, "{found:?}");
        assert_eq!(found.status, "converged");
        assert!((found.theta[1] - 0.5).abs() < 1e-8);
    }

    #[test]
    fn a_flat_likelihood_is_not_identified_even_at_its_start() {
        // Flat in w: the gradient is zero at the start, as for data where
        // every customer bought once, on the as-of day.
        let starts = vec![vec![0.5, 0.0]];
        let f = |x: &[f64], g: &mut [f64]| quadratic(x, g, &[1.0, 0.0]);
        let found = minimise(
            f,
            None::<fn(&[f64], &mut [f64]) -> f64>,
            &starts,
            &Options::default(),
            &["u", "w"],
        );
        assert!(!found.converged);
        assert!(
            found.status.contains("not identified") && found.status.contains('w'),
            "{}",
            found.status
        );
        let zero = |_x: &[f64], g: &mut [f64]| {
            g.iter_mut().for_each(|v| *v = 0.0);
            0.0
        };
        let found = minimise(
            zero,
            None::<fn(&[f64], &mut [f64]) -> f64>,
            &starts,
            &Options::default(),
            &["u", "w"],
        );
        assert!(!found.converged);
        assert!(found.status.contains("flat in u, w"), "{}", found.status);
        assert!(found.theta.iter().all(|v| v.is_nan()), "{:?}", found.theta);
    }

    #[test]
    fn a_parameter_running_off_is_not_converged_and_not_published() {
        // Decreasing without bound in u: the box stops it, the result is
        // not converged and u is NaN (published as NULL), never e^30.
        let f = |x: &[f64], g: &mut [f64]| {
            g[0] = -1.0;
            g[1] = 2.0 * x[1];
            -x[0] + x[1] * x[1]
        };
        let found = minimise(
            f,
            None::<fn(&[f64], &mut [f64]) -> f64>,
            &[vec![0.0, 1.0]],
            &Options::default(),
            &["u", "w"],
        );
        assert!(!found.converged);
        assert!(found.theta[0].is_nan(), "{found:?}");
        assert!(found.status.contains("u ran off"), "{}", found.status);
    }

    #[test]
    fn the_parallel_sum_equals_the_serial_one() {
        // Sums of integers are exact in any order.
        let rows: Vec<f64> = (0..100_000).map(|i| (i % 97) as f64).collect();
        let (s, g) = parallel_sum(&rows, |c| (c.iter().sum(), [c.len() as f64]));
        assert_eq!(s, rows.iter().sum::<f64>());
        assert_eq!(g[0], 100_000.0);
    }

    /// f = (x0 - 1)^2 + w u + u^2 with u = e^x1: as u -> 0 (x1 -> -inf)
    /// f tends to (x0 - 1)^2, the limiting model; the slope of -f leaving
    /// u = 0 is -w. For w > 0 the infimum is on the face u = 0; for w < 0
    /// the minimum is interior at u = -w/2.
    fn towards_a_face(x: &[f64], g: &mut [f64], w: f64) -> f64 {
        let u = x[1].exp();
        g[0] = 2.0 * (x[0] - 1.0);
        g[1] = (w + 2.0 * u) * u;
        (x[0] - 1.0).powi(2) + w * u + u * u
    }

    fn limit(x: &[f64], g: &mut [f64]) -> f64 {
        g[0] = 2.0 * (x[0] - 1.0);
        (x[0] - 1.0).powi(2)
    }

    fn fit_towards(w: f64) -> Found {
        let slope = move |_x: &[f64]| -w;
        let embed = |x: &[f64]| vec![x[0], f64::NEG_INFINITY];
        let face = Face {
            at_bound: "u = 0".into(),
            names: &["t"],
            starts: vec![vec![0.0]],
            objective: &limit,
            off_face: &slope,
            embed: &embed,
        };
        minimise_faces(
            |x: &[f64], g: &mut [f64]| towards_a_face(x, g, w),
            None::<fn(&[f64], &mut [f64]) -> f64>,
            &[vec![0.0, 0.0]],
            &Options::default(),
            &["t", "u"],
            &[face],
        )
    }

    #[test]
    fn an_optimum_on_a_face_is_a_verified_boundary_in_few_iterations() {
        // w = 1: the infimum is at u = 0, t = 1 (exact), reached only in
        // the limit; the face's model is fitted instead of crawling there.
        let found = fit_towards(1.0);
        assert!(found.converged && found.status == "boundary", "{found:?}");
        assert!((found.theta[0] - 1.0).abs() < 1e-8, "{found:?}");
        assert_eq!(found.theta[1], f64::NEG_INFINITY);
        assert_eq!(found.limit.len(), 1);
        assert!(
            found
                .at_bound
                .as_deref()
                .is_some_and(|b| b.starts_with("u = 0")),
            "{found:?}"
        );
        assert!(found.iterations < 50, "{found:?}");
    }

    #[test]
    fn a_face_that_moving_off_improves_is_not_the_result() {
        // w = -1: the slope off the face is +1, so the face is not an
        // optimum; the interior minimum u = 0.5 (exact) is, converged.
        let found = fit_towards(-1.0);
        assert!(found.converged && found.status == "converged", "{found:?}");
        assert!((found.theta[1] - 0.5f64.ln()).abs() < 1e-6, "{found:?}");
        assert!(found.at_bound.is_none());
    }

    #[test]
    fn the_penalty_adds_its_value_and_gradient_and_zero_adds_nothing() {
        // penalizer 0.5, centre (0, 1): at x = (1, 3) the penalty is
        // 0.5 * (1 + 4) = 2.5 and its gradient (1, 2).
        let centre = [0.0, 1.0];
        let mut f = penalised(
            |x: &[f64], g: &mut [f64]| quadratic(x, g, &[1.0, 1.0]),
            0.5,
            &centre,
        );
        let mut g = [0.0; 2];
        let v = f(&[1.0, 3.0], &mut g);
        assert!((v - (0.25 + 6.25 + 2.5)).abs() < 1e-12, "{v}");
        assert!((g[0] - (1.0 + 1.0)).abs() < 1e-12 && (g[1] - (5.0 + 2.0)).abs() < 1e-12);
        let mut f0 = penalised(
            |x: &[f64], g: &mut [f64]| quadratic(x, g, &[1.0, 1.0]),
            0.0,
            &centre,
        );
        let mut g0 = [0.0; 2];
        assert_eq!(f0(&[1.0, 3.0], &mut g0), 6.5);
        assert_eq!(g0, [1.0, 5.0]);
    }
}
