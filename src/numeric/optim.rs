//! A small L-BFGS minimiser (Nocedal & Wright, "Numerical Optimization",
//! 2nd ed., algorithm 7.4 with the two-loop recursion 7.5) and a backtracking
//! line search on the Armijo condition. Points where the objective is not
//! finite count as "too far" and shrink the step.

/// Stopping rules.
#[derive(Debug, Clone)]
pub struct Options {
    pub max_iter: usize,
    /// Converged when the largest gradient component is at most this.
    pub grad_tol: f64,
    /// ... or when f changes by less than this (relative) while the gradient
    /// is below `grad_tol * 1e3`: the objective is flat to machine precision.
    pub f_rel_tol: f64,
    /// Number of correction pairs kept.
    pub memory: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_iter: 1000,
            grad_tol: 1e-8,
            f_rel_tol: 1e-15,
            memory: 10,
        }
    }
}

/// The result of a minimisation.
#[derive(Debug, Clone)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub f: f64,
    pub grad_norm: f64,
    pub iterations: usize,
    /// True only when a stopping rule of `Options` was met.
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn inf_norm(g: &[f64]) -> f64 {
    g.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Minimise `f`, which returns the objective and writes the gradient.
pub fn lbfgs<F: FnMut(&[f64], &mut [f64]) -> f64>(mut f: F, x0: &[f64], opts: &Options) -> Minimum {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Minimum {
            x,
            f: fx,
            grad_norm: f64::NAN,
            iterations: 0,
            converged: false,
        };
    }
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut xn = vec![0.0; n];
    let mut gn = vec![0.0; n];
    for iter in 0..opts.max_iter {
        let gnorm = inf_norm(&g);
        if gnorm <= opts.grad_tol {
            return Minimum {
                x,
                f: fx,
                grad_norm: gnorm,
                iterations: iter,
                converged: true,
            };
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
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
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if !(slope < 0.0) {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            d = g.iter().map(|v| -v / gnorm.max(1.0)).collect();
            slope = dot(&g, &d);
        }
        // Backtracking line search, Armijo condition with c1 = 1e-4.
        let mut step = 1.0;
        let mut accepted = false;
        let mut fnew = fx;
        for _ in 0..60 {
            for j in 0..n {
                xn[j] = x[j] + step * d[j];
            }
            fnew = f(&xn, &mut gn);
            if fnew.is_finite()
                && gn.iter().all(|v| v.is_finite())
                && fnew <= fx + 1e-4 * step * slope
            {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            // No decrease possible along d: at a minimum to machine precision
            // only if the gradient is already tiny.
            let converged = gnorm <= opts.grad_tol * 1e3;
            return Minimum {
                x,
                f: fx,
                grad_norm: gnorm,
                iterations: iter + 1,
                converged,
            };
        }
        let s: Vec<f64> = (0..n).map(|j| xn[j] - x[j]).collect();
        let y: Vec<f64> = (0..n).map(|j| gn[j] - g[j]).collect();
        let sy = dot(&s, &y);
        let f_change = (fx - fnew).abs() / fx.abs().max(1.0);
        x.copy_from_slice(&xn);
        g.copy_from_slice(&gn);
        fx = fnew;
        if sy > 1e-12 * dot(&y, &y).max(1e-300) {
            s_hist.push(s);
            y_hist.push(y);
            if s_hist.len() > opts.memory {
                s_hist.remove(0);
                y_hist.remove(0);
            }
        }
        if f_change < opts.f_rel_tol && inf_norm(&g) <= opts.grad_tol * 1e3 {
            return Minimum {
                x,
                f: fx,
                grad_norm: inf_norm(&g),
                iterations: iter + 1,
                converged: true,
            };
        }
    }
    let gnorm = inf_norm(&g);
    Minimum {
        x,
        f: fx,
        grad_norm: gnorm,
        iterations: opts.max_iter,
        converged: gnorm <= opts.grad_tol,
    }
}

/// Minimise from each start (log parameters) in turn until one converges and keep the best
/// (a converged result over an unconverged one, then the lowest objective):
/// the fallback for likelihoods with flat regions. Returns the best minimum
/// and the iterations spent over all starts; `None` without starts.
pub fn multi_start<F: FnMut(&[f64], &mut [f64]) -> f64>(
    mut f: F,
    starts: &[Vec<f64>],
    opts: &Options,
) -> Option<(Minimum, usize)> {
    let mut best: Option<Minimum> = None;
    let mut iterations = 0;
    for x0 in starts {
        let m = lbfgs(&mut f, x0, opts);
        iterations += m.iterations;
        // Every custval model is fitted in log-parameter space: a parameter
        // that ran off to 1e-8 or 1e8 is a likelihood without an interior
        // optimum (one customer, no repeat purchases), not a converged fit.
        let converged =
            m.converged && m.f.is_finite() && m.x.iter().all(|v| v.abs() <= 1e8f64.ln());
        let better = match &best {
            None => true,
            Some(b) => (converged && !b.converged) || (converged == b.converged && m.f < b.f),
        };
        if better {
            best = Some(Minimum { converged, ..m });
        }
        if best.as_ref().is_some_and(|b| b.converged) {
            break;
        }
    }
    best.map(|b| (b, iterations))
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

    #[test]
    fn solves_a_quadratic() {
        // f = sum (i+1) (x_i - i)^2, minimum at x_i = i exactly; 1e-8.
        let f = |x: &[f64], g: &mut [f64]| {
            let mut s = 0.0;
            for i in 0..x.len() {
                let w = (i + 1) as f64;
                s += w * (x[i] - i as f64).powi(2);
                g[i] = 2.0 * w * (x[i] - i as f64);
            }
            s
        };
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
    fn a_non_finite_start_is_not_converged() {
        let m = lbfgs(
            |_x: &[f64], _g: &mut [f64]| f64::NAN,
            &[0.0],
            &Options::default(),
        );
        assert!(!m.converged);
    }
}
