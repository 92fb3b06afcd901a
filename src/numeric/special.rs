//! Special functions the models need: log-gamma, log-beta, digamma and the
//! power series of the Gaussian hypergeometric function 2F1 for real
//! arguments with 0 <= z < 1, with its condition number.

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, n = 9; relative error
/// about 1e-15). NaN for x <= 0.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if !(x > 0.0) || !x.is_finite() {
        return if x == f64::INFINITY {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln B(a, b).
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ψ(x), the derivative of ln Γ, for x > 0: recurrence up to x >= 6, then
/// the asymptotic series (Abramowitz & Stegun 6.3.18).
pub fn digamma(x: f64) -> f64 {
    if !(x > 0.0) || !x.is_finite() {
        return f64::NAN;
    }
    let mut x = x;
    let mut acc = 0.0;
    while x < 6.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    let series = f
        * (-1.0 / 12.0
            + f * (1.0 / 120.0
                + f * (-1.0 / 252.0
                    + f * (1.0 / 240.0 + f * (-1.0 / 132.0 + f * (691.0 / 32760.0))))));
    acc + x.ln() - 0.5 / x + series
}

/// The standard normal quantile Φ^-1(p) for 0 < p < 1 (Acklam's rational
/// approximation, relative error below 1.2e-9); NaN outside (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail(p)
    } else if p > 1.0 - 0.024_25 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// log(e^a + e^b) without overflow.
pub fn log_sum_exp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// The power series of 2F1(a, b; c; z) for real 0 <= z < 1 and c > 0
/// (Abramowitz & Stegun 15.1.1), with its condition number: the sum of the
/// terms' magnitudes over the magnitude of their sum. Rounding errors of the
/// terms reach the sum amplified by that number, so a caller can tell when
/// the series is not to be trusted (terms of alternating sign that cancel).
/// `None` outside the domain or when 10,000 terms do not converge.
pub fn hyp2f1_series(a: f64, b: f64, c: f64, z: f64) -> Option<(f64, f64)> {
    if !(0.0..1.0).contains(&z) || !(c > 0.0) {
        return None;
    }
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    let mut magnitude = 1.0f64;
    for k in 0..10_000u32 {
        let k = f64::from(k);
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        magnitude += term.abs();
        if !sum.is_finite() || !magnitude.is_finite() {
            return None;
        }
        if term.abs() <= 1e-17 * magnitude && k > 2.0 {
            return Some((sum, magnitude / sum.abs()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        // Γ(n) = (n-1)!, exact; tolerance 1e-12 relative.
        assert!((ln_gamma(1.0)).abs() < 1e-13);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert!((ln_gamma(101.0) - 363.739_375_555_563_5).abs() < 1e-9);
        assert!(ln_gamma(-1.0).is_nan());
    }

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = -γ (Euler–Mascheroni), ψ(0.5) = -γ - 2 ln 2 (A&S 6.3.2, 6.3.3); 1e-12.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-12);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-12);
        // Against the derivative of ln_gamma (central difference, 1e-6).
        for x in [0.3, 2.7, 15.0, 250.0] {
            let h = 1e-5;
            let d = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!((digamma(x) - d).abs() < 1e-6, "x={x}");
        }
    }

    #[test]
    fn normal_quantiles_match_the_tables() {
        // scipy.stats.norm.ppf (1.11): 0.95 -> 1.6448536269514722, 0.975 ->
        // 1.959963984540054, 0.995 -> 2.5758293035489004, 0.001 ->
        // -3.090232306167813; Acklam's bound 1.2e-9 relative.
        let cases = [
            (0.95, 1.644_853_626_951_472_2),
            (0.975, 1.959_963_984_540_054),
            (0.995, 2.575_829_303_548_900_4),
            (0.001, -3.090_232_306_167_813),
        ];
        for (p, want) in cases {
            let got = normal_quantile(p);
            assert!((got / want - 1.0).abs() < 1.2e-9, "{p}: {got}");
        }
        assert_eq!(normal_quantile(0.5), 0.0);
        assert!(normal_quantile(1.0).is_nan() && normal_quantile(0.0).is_nan());
    }

    #[test]
    fn hyp2f1_series_matches_closed_forms() {
        // 2F1(1,1;2;z) = -ln(1-z)/z (A&S 15.1.3); 1e-12 relative, up to
        // z = 0.9 (the models use the series no further).
        for z in [0.1, 0.5, 0.9] {
            let want = -(1.0f64 - z).ln() / z;
            let (got, cond) = hyp2f1_series(1.0, 1.0, 2.0, z).unwrap();
            assert!((got / want - 1.0).abs() < 1e-12, "z={z}");
            assert_eq!(cond, 1.0, "positive terms do not cancel");
        }
        // 2F1(a,b;b;z) = (1-z)^-a (A&S 15.1.8); 1e-12 relative.
        let (got, _) = hyp2f1_series(3.5, 2.0, 2.0, 0.7).unwrap();
        assert!((got / 0.3f64.powf(-3.5) - 1.0).abs() < 1e-12);
        // (1-z)^20 = 2F1(-20, b; b; z): alternating terms that cancel, and
        // the condition number says so (sum of |terms| = 1.5^20 at z = 0.5,
        // so 3^20 = 3.5e9 times the rounding of a term: 1e-5 relative).
        let (got, cond) = hyp2f1_series(-20.0, 1.5, 1.5, 0.5).unwrap();
        assert!((got / 0.5f64.powi(20) - 1.0).abs() < 1e-5, "{got}");
        assert!((cond / 3.0f64.powi(20) - 1.0).abs() < 1e-5, "{cond}");
        // Outside the domain: c <= 0 has poles, z >= 1 diverges.
        assert!(hyp2f1_series(1.0, 1.0, -0.5, 0.5).is_none());
        assert!(hyp2f1_series(1.0, 1.0, 2.0, 1.0).is_none());
    }
}
