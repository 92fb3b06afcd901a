//! Linear quantile regression: the coefficients `b` minimising the pinball
//! (check) loss `sum_i rho_tau(y_i - x_i . b)`, `rho_tau(r) = r * (tau - [r < 0])`
//! (Koenker & Bassett 1978), by iteratively reweighted least squares
//! (Schlossmacher 1973; Koenker 2005, section 6.4): each step solves the
//! weighted normal equations with weights `tau / |r|` above the line and
//! `(1 - tau) / |r|` below it, `|r|` floored at `FLOOR` times the residuals'
//! mean absolute value so that points on the line do not dominate.
//!
//! IRLS rather than the exact linear program: a handful of coefficients and
//! tens of thousands of rows, each step one pass and a small solve, no
//! dependency; it reaches the loss of the LP optimum to a relative 1e-6 on
//! the tests' data, which is far below the sampling error of a fit.

/// The solver's stopping rule.
const MAX_ITERATIONS: usize = 200;
/// Relative change of the loss that ends the iteration.
const TOLERANCE: f64 = 1e-10;
/// Residuals below this share of the mean absolute residual weigh as if this size.
const FLOOR: f64 = 1e-6;

/// A fitted quantile regression.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileFit {
    /// Coefficients, one per column of the design (intercept included if the
    /// caller put a column of ones in).
    pub coefficients: Vec<f64>,
    /// The pinball loss at `coefficients`, summed over rows.
    pub loss: f64,
    /// Reweighting steps taken.
    pub iterations: usize,
    /// Whether the loss stopped changing before `MAX_ITERATIONS`.
    pub converged: bool,
}

/// The pinball loss of residual `r` at quantile `tau`.
pub fn pinball(r: f64, tau: f64) -> f64 {
    if r >= 0.0 {
        tau * r
    } else {
        (tau - 1.0) * r
    }
}

fn loss(x: &[Vec<f64>], y: &[f64], b: &[f64], tau: f64) -> f64 {
    x.iter()
        .zip(y)
        .map(|(xi, yi)| pinball(yi - dot(xi, b), tau))
        .sum()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

/// Solve `a b = r` (a square, row-major) by Gaussian elimination with partial
/// pivoting; `None` when `a` is singular to working precision.
pub fn solve(mut a: Vec<Vec<f64>>, mut r: Vec<f64>) -> Option<Vec<f64>> {
    let n = r.len();
    let scale = a
        .iter()
        .flatten()
        .fold(0.0_f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= scale * 1e-13 {
            return None;
        }
        a.swap(col, pivot);
        r.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            r[col + 1 + offset] -= f * r[col];
        }
    }
    let mut b = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * b[k]).sum();
        b[row] = (r[row] - s) / a[row][row];
    }
    Some(b)
}

/// Weighted least squares `argmin sum w_i (y_i - x_i . b)^2`.
fn weighted_least_squares(x: &[Vec<f64>], y: &[f64], w: &[f64]) -> Option<Vec<f64>> {
    let p = x.first().map_or(0, Vec::len);
    let mut a = vec![vec![0.0; p]; p];
    let mut r = vec![0.0; p];
    for ((xi, yi), wi) in x.iter().zip(y).zip(w) {
        for j in 0..p {
            let wx = wi * xi[j];
            r[j] += wx * yi;
            for k in 0..=j {
                a[j][k] += wx * xi[k];
            }
        }
    }
    // Mirror the lower triangle into the upper one.
    for j in 0..p {
        let lower: Vec<f64> = (j + 1..p).map(|k| a[k][j]).collect();
        a[j][j + 1..].copy_from_slice(&lower);
    }
    solve(a, r)
}

/// The exact optimum near an IRLS solution `b`: the pinball loss is
/// minimised at a vertex, a line through p rows (Koenker 2005, section
/// 2.2), and IRLS ends close to it with those rows' residuals near 0. The
/// line through the p rows of smallest |residual| whose features are
/// linearly independent (Gram-Schmidt, in order of |residual|, then row
/// number). A vertex depends only on its p rows, so inputs that differ in
/// the last bits (sums added in another order) give the same coefficients
/// to the last bits, where IRLS's stopping point could move by 1e-5.
fn vertex(x: &[Vec<f64>], y: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let p = b.len();
    let mut order: Vec<(f64, usize)> = x
        .iter()
        .zip(y)
        .enumerate()
        .map(|(i, (xi, yi))| ((yi - dot(xi, b)).abs(), i))
        .collect();
    order.sort_by(|u, v| u.0.total_cmp(&v.0).then(u.1.cmp(&v.1)));
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(p);
    let mut rows: Vec<usize> = Vec::with_capacity(p);
    for (_, i) in order {
        let mut v = x[i].clone();
        for q in &basis {
            let c = dot(&v, q);
            v.iter_mut().zip(q).for_each(|(a, b)| *a -= c * b);
        }
        let norm = dot(&v, &v).sqrt();
        if norm > 1e-9 * dot(&x[i], &x[i]).sqrt().max(f64::MIN_POSITIVE) {
            basis.push(v.iter().map(|a| a / norm).collect());
            rows.push(i);
            if rows.len() == p {
                let a = rows.iter().map(|&i| x[i].clone()).collect();
                return solve(a, rows.iter().map(|&i| y[i]).collect());
            }
        }
    }
    None
}

/// Fit the `tau` quantile of `y` given the rows of `x` (all the same width;
/// include a column of ones for an intercept). `None` when there are no
/// rows, `tau` is not in (0, 1), a value is not finite, or the design is
/// singular (a column constant or a copy of another).
pub fn quantile_regression(x: &[Vec<f64>], y: &[f64], tau: f64) -> Option<QuantileFit> {
    let p = x.first()?.len();
    let finite = x.iter().flatten().chain(y).all(|v| v.is_finite());
    if !(tau > 0.0 && tau < 1.0) || x.len() != y.len() || !finite {
        return None;
    }
    if x.iter().any(|xi| xi.len() != p) {
        return None;
    }
    // Start from least squares: the mean line.
    let mut b = weighted_least_squares(x, y, &vec![1.0; y.len()])?;
    let mut current = loss(x, y, &b, tau);
    let mut w = vec![0.0; y.len()];
    for iteration in 1..=MAX_ITERATIONS {
        let residuals: Vec<f64> = x.iter().zip(y).map(|(xi, yi)| yi - dot(xi, &b)).collect();
        let mean_abs = residuals.iter().map(|r| r.abs()).sum::<f64>() / y.len() as f64;
        let floor = (mean_abs * FLOOR).max(f64::MIN_POSITIVE);
        for (wi, r) in w.iter_mut().zip(&residuals) {
            let side = if *r >= 0.0 { tau } else { 1.0 - tau };
            *wi = side / r.abs().max(floor);
        }
        let next = weighted_least_squares(x, y, &w)?;
        let next_loss = loss(x, y, &next, tau);
        let change = (current - next_loss).abs() / current.max(f64::MIN_POSITIVE);
        if next_loss <= current {
            b = next;
            current = next_loss;
        }
        if change < TOLERANCE {
            return Some(polished(x, y, tau, b, current, iteration, true));
        }
    }
    Some(polished(x, y, tau, b, current, MAX_ITERATIONS, false))
}

/// The fit at the vertex near `b` when that is no worse (it is the exact
/// optimum when IRLS has found the optimum's rows), else at `b`.
fn polished(
    x: &[Vec<f64>],
    y: &[f64],
    tau: f64,
    b: Vec<f64>,
    current: f64,
    iterations: usize,
    converged: bool,
) -> QuantileFit {
    let exact = vertex(x, y, &b)
        .map(|v| {
            let l = loss(x, y, &v, tau);
            (v, l)
        })
        .filter(|(_, l)| *l <= current * (1.0 + 1e-9));
    let (coefficients, loss) = exact.unwrap_or((b, current));
    QuantileFit {
        coefficients,
        loss,
        iterations,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Exp};

    /// y = 1 + 2 x + (1 + x) e, e ~ Exp(1), x ~ U(0, 2): the tau quantile of
    /// y given x is 1 + 2x + (1 + x) q with q = -ln(1 - tau) (the
    /// exponential's quantile), so the true line is (1 + q, 2 + q).
    #[test]
    fn recovers_a_known_conditional_quantile() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let e = Exp::new(1.0).unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..20_000 {
            let xi: f64 = rng.random_range(0.0..2.0);
            x.push(vec![1.0, xi]);
            y.push(1.0 + 2.0 * xi + (1.0 + xi) * e.sample(&mut rng));
        }
        for tau in [0.5, 0.9] {
            let q = -(1.0_f64 - tau).ln();
            let fit = quantile_regression(&x, &y, tau).unwrap();
            assert!(fit.converged, "{fit:?}");
            // Tolerance 0.1: the sampling error of a 0.9-quantile line from
            // 20,000 points is a few hundredths here.
            assert!(
                (fit.coefficients[0] - (1.0 + q)).abs() < 0.1,
                "{tau} {fit:?}"
            );
            assert!(
                (fit.coefficients[1] - (2.0 + q)).abs() < 0.1,
                "{tau} {fit:?}"
            );
            // The first-order condition of the pinball loss: about tau of the
            // points lie on or below the line (within p / n plus rounding).
            let below = x
                .iter()
                .zip(&y)
                .filter(|(xi, yi)| **yi <= dot(xi, &fit.coefficients) + 1e-9)
                .count() as f64
                / y.len() as f64;
            assert!((below - tau).abs() < 0.005, "{tau}: {below}");
        }
    }

    /// The fit is a minimum: moving any coefficient by a small step either
    /// way does not lower the loss (beyond 1e-6 relative, IRLS's accuracy).
    #[test]
    fn no_coordinate_step_lowers_the_loss() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..2_000 {
            let a: f64 = rng.random_range(-1.0..1.0);
            let b: f64 = rng.random_range(0.0..3.0);
            x.push(vec![1.0, a, b]);
            y.push(0.5 * a - b + rng.random_range(-1.0..1.0) * (1.0 + b));
        }
        let fit = quantile_regression(&x, &y, 0.9).unwrap();
        for j in 0..3 {
            for step in [-1e-3, 1e-3, -1e-2, 1e-2] {
                let mut b = fit.coefficients.clone();
                b[j] += step;
                let moved = loss(&x, &y, &b, 0.9);
                assert!(
                    moved >= fit.loss * (1.0 - 1e-6),
                    "{j} {step}: {moved} < {}",
                    fit.loss
                );
            }
        }
    }

    /// Inputs differing in the last bits (as sums added in another order
    /// do) give coefficients equal to 1e-12 relative: the fit is the exact
    /// vertex, not where IRLS happened to stop.
    #[test]
    fn last_bit_changes_do_not_move_the_fit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let e = Exp::new(1.0).unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..5_000 {
            let a: f64 = rng.random_range(0.0..3.0);
            let c = f64::from(rng.random_range(1..=8u8)).ln();
            x.push(vec![1.0, a, c]);
            y.push(0.5 + a + 0.3 * c + e.sample(&mut rng));
        }
        let nudged: Vec<f64> = y.iter().map(|v| v * (1.0 + 3e-16)).collect();
        let (f, g) = (
            quantile_regression(&x, &y, 0.9).unwrap(),
            quantile_regression(&x, &nudged, 0.9).unwrap(),
        );
        for (p, q) in f.coefficients.iter().zip(&g.coefficients) {
            assert!((p - q).abs() <= 1e-12 * p.abs().max(1.0), "{f:?} vs {g:?}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_fit() {
        let x = vec![vec![1.0, 2.0], vec![1.0, 2.0], vec![1.0, 2.0]];
        assert_eq!(
            quantile_regression(&x, &[1.0, 2.0, 3.0], 0.9),
            None,
            "singular"
        );
        let x = vec![vec![1.0, 0.0], vec![1.0, 1.0]];
        assert_eq!(quantile_regression(&x, &[1.0, f64::NAN], 0.9), None, "NaN");
        assert_eq!(quantile_regression(&x, &[1.0, 2.0], 1.0), None, "tau");
        assert_eq!(quantile_regression(&[], &[], 0.5), None, "empty");
    }

    #[test]
    fn solves_a_small_system() {
        // 2a + b = 5, a + 3b = 10: a = 1, b = 3.
        let b = solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![5.0, 10.0]).unwrap();
        assert!(
            (b[0] - 1.0).abs() < 1e-12 && (b[1] - 3.0).abs() < 1e-12,
            "{b:?}"
        );
    }
}
