//! A small L-BFGS minimiser (Nocedal & Wright, "Numerical Optimization",
//! 2nd ed., algorithm 7.4 with the two-loop recursion 7.5) and a backtracking
//! line search on the Armijo condition. Points where the objective is not
//! finite count as "too far" and shrink the step.

/// Stopping rules.
#[derive(Debug, Clone)]
pub struct Options {
    /// Iterations of one L-BFGS run at most.
    pub max_iter: usize,
    /// Converged when the largest gradient component is at most this.
    pub grad_tol: f64,
    /// ... or when f changes by less than this (relative) while the gradient
    /// is below `grad_tol * 1e3`: the objective is flat to machine precision.
    pub f_rel_tol: f64,
    /// Number of correction pairs kept.
    pub memory: usize,
    /// Stop, unconverged, as soon as an iterate has some |x_i| beyond this
    /// (log parameters): the parameter is running off to a boundary that
    /// no face models, [`in_bounds`] rejects wherever it would end, and
    /// following it costs every remaining iteration (issue 17's no-dropout
    /// shop at 20M rows: the BG/NBD fit ran for over 15 minutes).
    pub give_up_beyond: f64,
}

/// The box of every custval model's log parameters: a fit that ends with
/// some |ln theta_i| beyond ln 1e8 has no interior optimum there.
pub const LOG_BOUND: f64 = 18.420_680_743_952_367;

impl Default for Options {
    fn default() -> Self {
        Options {
            max_iter: 1000,
            grad_tol: 1e-8,
            f_rel_tol: 1e-15,
            memory: 10,
            give_up_beyond: f64::INFINITY,
        }
    }
}

impl Options {
    /// The stopping rules of the models' maximum-likelihood fits (BG/NBD,
    /// Gamma-Gamma), one home for both: a gradient of the mean
    /// log-likelihood per customer at most 1e-9, tighter than the default.
    pub fn model_fit() -> Options {
        Options {
            grad_tol: 1e-9,
            // At the box: past it the likelihood is flat to rounding and a
            // run creeps on for its whole budget (r at 1.4e8 after 1,000
            // iterations on the Poisson shop observed a day late).
            give_up_beyond: LOG_BOUND,
            ..Options::default()
        }
    }
}

/// The result of a minimisation.
#[derive(Debug, Clone)]
pub struct Minimum {
    /// The point reached.
    pub x: Vec<f64>,
    /// The objective at `x`.
    pub f: f64,
    /// The largest |gradient component| at `x`; NaN when f or the gradient
    /// at the start is not finite.
    pub grad_norm: f64,
    /// Iterations spent.
    pub iterations: usize,
    /// True only when a stopping rule of `Options` was met; [`multi_start`]
    /// and [`staged`] also require a finite f and every |x_i| <= ln 1e8.
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn inf_norm(g: &[f64]) -> f64 {
    g.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The correction pairs (s, y) of L-BFGS: its picture of the curvature.
#[derive(Debug, Clone, Default)]
pub struct Curvature {
    s: Vec<Vec<f64>>,
    y: Vec<Vec<f64>>,
}

/// Minimise `f`, which returns the objective and writes the gradient.
pub fn lbfgs<F: FnMut(&[f64], &mut [f64]) -> f64>(f: F, x0: &[f64], opts: &Options) -> Minimum {
    lbfgs_from(f, x0, opts, &mut Curvature::default())
}

impl Curvature {
    /// The quasi-Newton direction d = -H g by the two-loop recursion
    /// (Nocedal & Wright, algorithm 7.4); `gnorm` is the largest |g_i|.
    fn direction(&self, g: &[f64], gnorm: f64) -> Vec<f64> {
        let (s_hist, y_hist) = (&self.s, &self.y);
        let n = g.len();
        let mut q = g.to_vec();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            for j in 0..n {
                q[j] -= alpha[i] * y_hist[i][j];
            }
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / gnorm.max(1.0)
        };
        for v in q.iter_mut() {
            *v *= gamma;
        }
        for i in 0..k {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            for j in 0..n {
                q[j] += s_hist[i][j] * (alpha[i] - beta);
            }
        }
        q.iter().map(|v| -v).collect()
    }

    /// Keep the pair (s, y) when it carries positive curvature, at most
    /// `memory` pairs, the oldest dropped first.
    fn update(&mut self, s: Vec<f64>, y: Vec<f64>, memory: usize) {
        if dot(&s, &y) > 1e-12 * dot(&y, &y).max(1e-300) {
            self.s.push(s);
            self.y.push(y);
            if self.s.len() > memory {
                self.s.remove(0);
                self.y.remove(0);
            }
        }
    }

    fn clear(&mut self) {
        self.s.clear();
        self.y.clear();
    }
}

/// Backtracking line search from `x` along `d` on the Armijo condition
/// (c1 = 1e-4), or on the approximate Wolfe conditions of Hager & Zhang
/// (2005, SIAM J. Optim. 16(1), eq. 23): near the optimum of a sum over a
/// million customers, changes of f drown in rounding while the gradient is
/// still exact, so the step is judged by the slope it reaches. On success
/// `xn` and `gn` hold the new point and gradient and the new f is returned.
fn line_search<F: FnMut(&[f64], &mut [f64]) -> f64>(
    f: &mut F,
    x: &[f64],
    fx: f64,
    d: &[f64],
    slope: f64,
    xn: &mut [f64],
    gn: &mut [f64],
) -> Option<f64> {
    let mut step = 1.0;
    let f_noise = 1e-12 * fx.abs().max(1e-300);
    for _ in 0..60 {
        for j in 0..x.len() {
            xn[j] = x[j] + step * d[j];
        }
        let fnew = f(xn, gn);
        if !(fnew.is_finite() && gn.iter().all(|v| v.is_finite())) {
            step *= 0.5;
            continue;
        }
        let armijo = fnew <= fx + 1e-4 * step * slope;
        let slope_new = dot(gn, d);
        let approx_wolfe =
            fnew <= fx + f_noise && 0.9 * slope <= slope_new && slope_new <= -0.8 * slope;
        if armijo || approx_wolfe {
            return Some(fnew);
        }
        step *= 0.5;
    }
    None
}

/// [`lbfgs`] starting with the correction pairs of an earlier run on a
/// similar objective, which it updates.
pub fn lbfgs_from<F: FnMut(&[f64], &mut [f64]) -> f64>(
    mut f: F,
    x0: &[f64],
    opts: &Options,
    curvature: &mut Curvature,
) -> Minimum {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let minimum =
        |x: Vec<f64>, f: f64, grad_norm: f64, iterations: usize, converged: bool| Minimum {
            x,
            f,
            grad_norm,
            iterations,
            converged,
        };
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return minimum(x, fx, f64::NAN, 0, false);
    }
    let mut xn = vec![0.0; n];
    let mut gn = vec![0.0; n];
    for iter in 0..opts.max_iter {
        let gnorm = inf_norm(&g);
        if gnorm <= opts.grad_tol {
            return minimum(x, fx, gnorm, iter, true);
        }
        let mut d = curvature.direction(&g, gnorm);
        let mut slope = dot(&g, &d);
        if !(slope < 0.0) {
            // Not a descent direction: restart from steepest descent.
            curvature.clear();
            d = g.iter().map(|v| -v / gnorm.max(1.0)).collect();
            slope = dot(&g, &d);
        }
        let Some(fnew) = line_search(&mut f, &x, fx, &d, slope, &mut xn, &mut gn) else {
            // No decrease possible along d: at a minimum to machine precision
            // only if the gradient is already tiny.
            return minimum(x, fx, gnorm, iter + 1, gnorm <= opts.grad_tol * 1e3);
        };
        let s: Vec<f64> = (0..n).map(|j| xn[j] - x[j]).collect();
        let y: Vec<f64> = (0..n).map(|j| gn[j] - g[j]).collect();
        let f_change = (fx - fnew).abs() / fx.abs().max(1.0);
        x.copy_from_slice(&xn);
        g.copy_from_slice(&gn);
        fx = fnew;
        curvature.update(s, y, opts.memory);
        if x.iter().any(|v| v.abs() > opts.give_up_beyond) {
            return minimum(x, fx, inf_norm(&g), iter + 1, false);
        }
        if f_change < opts.f_rel_tol && inf_norm(&g) <= opts.grad_tol * 1e3 {
            return minimum(x, fx, inf_norm(&g), iter + 1, true);
        }
    }
    let gnorm = inf_norm(&g);
    minimum(x, fx, gnorm, opts.max_iter, gnorm <= opts.grad_tol)
}

/// Minimise from each start (log parameters) in turn until one converges and keep the best
/// (a converged result over an unconverged one, then the lowest objective):
/// the fallback for likelihoods with flat regions. Returns the best minimum
/// and the iterations spent over all starts; `None` without starts.
pub fn multi_start<F: FnMut(&[f64], &mut [f64]) -> f64>(
    f: F,
    starts: &[Vec<f64>],
    opts: &Options,
) -> Option<(Minimum, usize)> {
    multi_start_curvature(f, starts, opts).map(|(m, it, _)| (m, it))
}

/// [`multi_start`], also returning the curvature learned by the best run.
fn multi_start_curvature<F: FnMut(&[f64], &mut [f64]) -> f64>(
    mut f: F,
    starts: &[Vec<f64>],
    opts: &Options,
) -> Option<(Minimum, usize, Curvature)> {
    let mut best: Option<(Minimum, Curvature)> = None;
    let mut iterations = 0;
    for x0 in starts {
        let mut curvature = Curvature::default();
        let m = lbfgs_from(&mut f, x0, opts, &mut curvature);
        iterations += m.iterations;
        let converged = m.converged && in_bounds(&m);
        let better = match &best {
            None => true,
            Some((b, _)) => (converged && !b.converged) || (converged == b.converged && m.f < b.f),
        };
        if better {
            best = Some((Minimum { converged, ..m }, curvature));
        }
        if best.as_ref().is_some_and(|(b, _)| b.converged) {
            break;
        }
    }
    best.map(|(b, c)| (b, iterations, c))
}

/// Every custval model is fitted in log-parameter space: a parameter that
/// ran off to 1e-8 or 1e8 is a likelihood without an interior optimum (one
/// customer, no repeat purchases), not a converged fit.
fn in_bounds(m: &Minimum) -> bool {
    m.f.is_finite() && m.x.iter().all(|v| v.abs() <= LOG_BOUND)
}

/// Fit a large data set in two stages: first on a subsample (`sub`, the
/// same mean objective over a systematic sample of the customers, see
/// [`systematic_sample`]), then on all the data (`full`) from the
/// subsample's optimum, keeping the curvature learned there. The subsample's
/// optimum lies within sampling error of the full one, so the second stage
/// needs a few iterations instead of a whole descent; its own stopping rules
/// decide convergence, so the result is the full data's optimum. When either
/// stage fails, [`multi_start`] runs on all the data. Iterations count both
/// stages.
pub fn staged<F, G>(
    mut full: F,
    sub: Option<G>,
    starts: &[Vec<f64>],
    opts: &Options,
) -> Option<(Minimum, usize)>
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
    G: FnMut(&[f64], &mut [f64]) -> f64,
{
    let mut spent = 0;
    if let Some(sub) = sub {
        if let Some((m, it, mut curvature)) = multi_start_curvature(sub, starts, opts) {
            spent += it;
            if m.converged {
                let m = lbfgs_from(&mut full, &m.x, opts, &mut curvature);
                spent += m.iterations;
                if m.converged && in_bounds(&m) {
                    return Some((m, spent));
                }
            }
        }
    }
    multi_start(full, starts, opts).map(|(m, it)| (m, it + spent))
}

/// A fit over more than this many patterns starts on a sample (see
/// [`staged`]) of [`STAGE_SAMPLE`] customers.
const STAGE_ABOVE: usize = 100_000;
const STAGE_SAMPLE: usize = 50_000;

/// The first-stage sample size for a fit over `patterns` patterns, if any.
pub fn stage_sample_size(patterns: usize) -> Option<usize> {
    (patterns > STAGE_ABOVE).then_some(STAGE_SAMPLE)
}

/// A systematic sample of about `size` customers from weighted patterns
/// (weights are customer counts): customer number `k * step` for k = 0, 1,
/// ... of the running count is drawn, and each drawn pattern comes back
/// with the number of drawn customers it holds as its weight (`reweight`).
/// Over patterns sorted by their values, this is a sample stratified on
/// them.
pub fn systematic_sample<T: Copy>(
    patterns: &[T],
    weight: impl Fn(&T) -> f64,
    reweight: impl Fn(T, f64) -> T,
    size: usize,
) -> Vec<T> {
    let total: f64 = patterns.iter().map(&weight).sum();
    let step = total / size.max(1) as f64;
    let mut out = Vec::with_capacity(size + 1);
    let mut before = 0.0;
    for p in patterns {
        let after = before + weight(p);
        // Multiples of step in [before, after).
        let drawn = (after / step).ceil() - (before / step).ceil();
        if drawn > 0.0 {
            out.push(reweight(*p, drawn));
        }
        before = after;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
        let n = x.len();
        let mut f = 0.0;
        g.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = 1.0 - x[i];
            f += 100.0 * a * a + b * b;
            g[i] += -400.0 * x[i] * a - 2.0 * b;
            g[i + 1] += 200.0 * a;
        }
        f
    }

    #[test]
    fn finds_the_rosenbrock_minimum() {
        // The minimum is at (1, ..., 1) exactly; tolerance 1e-6.
        for n in [2, 4] {
            let x0 = vec![-1.2; n];
            let m = lbfgs(rosenbrock, &x0, &Options::default());
            assert!(m.converged, "{m:?}");
            for v in &m.x {
                assert!((v - 1.0).abs() < 1e-6, "{m:?}");
            }
        }
    }

    /// f = sum scale (i+1) (x_i - i - shift)^2, minimum at x_i = i + shift.
    fn quadratic(x: &[f64], g: &mut [f64], scale: f64, shift: f64) -> f64 {
        let mut s = 0.0;
        for i in 0..x.len() {
            let (w, d) = (scale * (i + 1) as f64, x[i] - i as f64 - shift);
            s += w * d * d;
            g[i] = 2.0 * w * d;
        }
        s
    }

    #[test]
    fn solves_a_quadratic() {
        // Minimum at x_i = i exactly; 1e-8.
        let f = |x: &[f64], g: &mut [f64]| quadratic(x, g, 1.0, 0.0);
        let m = lbfgs(f, &[10.0; 5], &Options::default());
        assert!(m.converged);
        for (i, v) in m.x.iter().enumerate() {
            assert!((v - i as f64).abs() < 1e-8);
        }
    }

    #[test]
    fn reports_non_convergence_honestly() {
        let m = lbfgs(
            rosenbrock,
            &[-1.2, 1.0],
            &Options {
                max_iter: 3,
                ..Options::default()
            },
        );
        assert!(!m.converged);
        assert_eq!(m.iterations, 3);
    }

    #[test]
    fn a_model_fit_gives_up_when_a_parameter_runs_off() {
        // f = ln(1 + e^-x) + 1e-3 y^2: no minimum in x (it decreases
        // towards x -> infinity, ever flatter), as a likelihood whose
        // supremum lies on an unmodelled face. The model fits' options stop
        // the run unconverged once x passes LOG_BOUND (before the gradient
        // falls under their tolerance 1e-9, at x = 20.7).
        let f = |x: &[f64], g: &mut [f64]| {
            let e = (-x[0]).exp();
            g[0] = -e / (1.0 + e);
            g[1] = 2e-3 * x[1];
            e.ln_1p() + 1e-3 * x[1] * x[1]
        };
        let m = lbfgs(f, &[0.0, 1.0], &Options::model_fit());
        assert!(!m.converged, "{m:?}");
        assert!(m.x[0] > LOG_BOUND && m.iterations < 100, "{m:?}");
    }

    #[test]
    fn a_systematic_sample_draws_every_step_th_customer() {
        // 31 customers, 10 drawn: customers 0, 3.1, 6.2, ... of the running
        // count, so each pattern gets floor or ceil of weight / 3.1.
        let w = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let patterns: Vec<(usize, f64)> = w.iter().copied().enumerate().collect();
        let s = systematic_sample(&patterns, |p| p.1, |p, d| (p.0, d), 10);
        assert_eq!(s.iter().map(|(_, d)| d).sum::<f64>(), 10.0);
        for (i, d) in &s {
            let share = w[*i] / 3.1;
            assert!(*d == share.floor() || *d == share.ceil(), "{i}: {d}");
        }
        assert_eq!(s[0], (0, 1.0));
        // Pattern 5 (customers 14..23) holds draws 15.5, 18.6, 21.7.
        assert!(s.contains(&(5, 3.0)), "{s:?}");
    }

    #[test]
    fn staged_reaches_the_full_minimum_not_the_sample_s() {
        // The sample's quadratic is centred 0.01 away from the full one's;
        // the result must be the full minimum (x_i = i) to 1e-8.
        let full = |x: &[f64], g: &mut [f64]| quadratic(x, g, 1.0, 0.0);
        let sub = |x: &[f64], g: &mut [f64]| quadratic(x, g, 1.1, 0.01);
        let starts = vec![vec![5.0; 4]];
        let (m, _) = staged(full, Some(sub), &starts, &Options::default()).unwrap();
        assert!(m.converged);
        for (i, v) in m.x.iter().enumerate() {
            assert!((v - i as f64).abs() < 1e-8, "{m:?}");
        }
        // A sample objective that fails falls back to the full multi-start.
        let bad = |_x: &[f64], _g: &mut [f64]| f64::NAN;
        let (m, _) = staged(full, Some(bad), &starts, &Options::default()).unwrap();
        assert!(m.converged);
        assert!((m.x[3] - 3.0).abs() < 1e-8, "{m:?}");
    }

    #[test]
    fn a_non_finite_start_is_not_converged() {
        let m = lbfgs(
            |_x: &[f64], _g: &mut [f64]| f64::NAN,
            &[0.0],
            &Options::default(),
        );
        assert!(!m.converged);
    }
}
