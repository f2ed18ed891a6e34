//! The Student-t quantile, built only on `libm` and IEEE 754 arithmetic
//! (+ − × ÷ and √, which IEEE 754 rounds correctly), so that it gives the
//! same bits on every platform (docs/governance.md, "Determinism").
//!
//! For 3 ≤ ν < [`SERIES_NU_MIN`] the quantile starts from Hill's
//! approximation and is refined by Halley steps on the exact tail, kept
//! inside a bracket. The tail comes from the regularized incomplete beta
//! function, P(T > t) = ½·I_x(ν/2, ½) with x = ν/(ν + t²), evaluated by its
//! continued fraction (modified Lentz). ν = 1 and ν = 2 have closed forms;
//! from [`SERIES_NU_MIN`] on, the Cornish–Fisher expansion in 1/ν about the
//! normal quantile is exact to rounding.
//!
//! References: Hill (1970), "Algorithm 396: Student's t-quantiles", CACM
//! 13(10); Press et al., "Numerical Recipes", 3rd ed., §6.4 (the continued
//! fraction, `betacf`) and §5.2 (Lentz's method); Abramowitz & Stegun
//! 26.7.5 (the expansion), 26.2.23 (a normal deviate to start from) and
//! 6.1.47 (the series of ln Γ(a + ½) − ln Γ(a)).

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// ln √π.
const LN_SQRT_PI: f64 = 0.572_364_942_924_700_1;
/// 1/√(2π).
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// From this many degrees of freedom on, the quantile is the Cornish–Fisher
/// expansion to 1/ν⁴: its truncation error is below 4e-15 relative for
/// every p < 1 (below 1e-18 for p ≤ 0.9995), smaller than the rounding of
/// the beta route there, which grows with ν.
const SERIES_NU_MIN: u64 = 8192;
/// From this a = ν/2 on, ln Γ(a + ½) − ln Γ(a) is the asymptotic series
/// (truncation error below 1e-19); below it, a difference of `libm::lgamma`
/// values no larger than 28 (error below 1e-14).
const SERIES_A_MIN: f64 = 16.0;
/// The continued fraction stops when a factor is within this of 1.
const FRACTION_TOLERANCE: f64 = 4.0 * f64::EPSILON;
/// Most terms of the continued fraction: along the quantile's path it takes
/// at most 41 (test `the_iteration_bounds_hold_with_room_to_spare`).
const FRACTION_TERMS_MAX: u32 = 1000;
/// A Halley step smaller than this, relative to t, means the next step lands
/// on the root to within rounding (the error after a step is of the order of
/// the cube of the one before).
const STEP_TOLERANCE: f64 = 1e-12;
/// Most evaluations of one Halley refinement: it takes at most 4 (test
/// `the_iteration_bounds_hold_with_room_to_spare`); a step that would leave
/// the bracket bisects it instead.
const STEPS_MAX: u32 = 64;

/// The `p` quantile of Student's t with `df` degrees of freedom (`df` ≥ 1):
/// the t with P(T ≤ t) = p. `p` ≥ 1 gives +∞, `p` ≤ 0 gives −∞; below ½
/// the symmetry t_p = −t_{1−p} is used (with 1 − p rounded), since only
/// upper quantiles are asked for.
///
/// # Panics
///
/// If `df` is 0, or if an iteration exceeds its bound (a bug: the bounds are
/// tested over the whole domain).
pub(crate) fn quantile(df: u64, p: f64) -> f64 {
    assert!(df >= 1, "Student's t needs at least one degree of freedom");
    if p.is_nan() {
        return f64::NAN;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < 0.5 {
        return -quantile(df, 1.0 - p);
    }
    // p ∈ [½, 1): the tail q = 1 − p is exact (Sterbenz), and so is p − ½.
    let q = 1.0 - p;
    if q == 0.5 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss, reason = "ν is exact to 2^53 and every formula is smooth beyond")]
    let nu = df as f64;
    match df {
        // Cauchy: t = tan(π(p − ½)) = cot(πq), from whichever argument is
        // the smaller, so that its rounding is relative to it.
        1 if q > 0.25 => libm::tan(PI * (p - 0.5)),
        1 => 1.0 / libm::tan(PI * q),
        // P(T > t) = ½(1 − t/√(t² + 2)), so t = (1 − 2q)/√(2q(1 − q)).
        2 => (2.0 * p - 1.0) / (2.0 * q * p).sqrt(),
        _ if df >= SERIES_NU_MIN => cornish_fisher(nu, normal_quantile(p).root),
        _ => refine_t(nu, p).root,
    }
}

/// A refined root and what it took.
#[derive(Clone, Copy, Debug)]
struct Refined {
    root: f64,
    /// Evaluations of g.
    #[cfg_attr(not(test), allow(dead_code, reason = "the iteration-bound test reads it"))]
    steps: u32,
    /// The most continued-fraction terms one evaluation took.
    #[cfg_attr(not(test), allow(dead_code, reason = "the iteration-bound test reads it"))]
    terms: u32,
}

/// One evaluation for [`halley`]: g(t), decreasing in t, with g' = −density
/// and g'' = density·curvature.
struct Evaluation {
    g: f64,
    density: f64,
    curvature: f64,
    /// Continued-fraction terms the evaluation took.
    terms: u32,
}

/// Halley's method on a decreasing g with a root in (0, ∞), from `start`
/// (1 if that is 0 or not finite), kept inside the bracket the
/// evaluations so far establish (a step that would leave it bisects it, or
/// doubles t while no upper end is known). Once a step is below
/// [`STEP_TOLERANCE`] of t, one more is taken. `what` names the root if the
/// bound is ever exceeded.
fn halley(start: f64, what: impl Fn() -> String, evaluate: impl Fn(f64) -> Evaluation) -> Refined {
    let (mut lo, mut hi) = (0.0_f64, f64::INFINITY);
    let mut t = if start != 0.0 && start.is_finite() { start } else { 1.0 };
    let mut converged = false;
    let mut terms = 0;
    for steps in 1..=STEPS_MAX {
        let Evaluation { g, density, curvature, terms: used } = evaluate(t);
        terms = terms.max(used);
        if g == 0.0 {
            return Refined { root: t, steps, terms };
        }
        if g > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        // Newton's step u = g/f; Halley's is u/(1 − u·curvature/2).
        let newton = g / density;
        let mut next = t + newton / (1.0 - 0.5 * newton * curvature);
        if !(lo..=hi).contains(&next) {
            next = if hi.is_finite() { 0.5 * (lo + hi) } else { 2.0 * t };
        }
        if converged {
            return Refined { root: next, steps, terms };
        }
        converged = (next - t).abs() <= STEP_TOLERANCE * next;
        t = next;
    }
    panic!("the {} did not converge in {STEPS_MAX} steps", what());
}

/// The t quantile for ν ≥ 3 and p ∈ (½, 1): Halley on
/// g(t) = P(T > t) − (1 − p) from Hill's start.
fn refine_t(nu: f64, p: f64) -> Refined {
    let ln_beta = ln_beta_half(nu / 2.0);
    let start = hill(nu, 2.0 * (1.0 - p));
    halley(
        start,
        || format!("t quantile (ν = {nu}, p = {p})"),
        |t| {
            let (g, density, terms) = excess(t, nu, ln_beta, p);
            Evaluation { g, density, curvature: (nu + 1.0) * t / (nu + t * t), terms }
        },
    )
}

/// g(t) = P(T > t) − (1 − p), the density f(t) of Student's t with `nu`
/// degrees of freedom, for t > 0, and the continued-fraction terms it took;
/// `ln_beta` is ln B(ν/2, ½), p ∈ (½, 1).
///
/// With a = ν/2, x = ν/(ν + t²), y = 1 − x = t²/(ν + t²) and the front
/// factor F = x^a·y^½/B(a, ½): f(t) = F/t, and either the tail
/// P(T > t) = ½·I_x(a, ½) = ½·F·cf(a, ½, x)/a, so g = tail − (1 − p), or
/// the centre P(0 < T < t) = ½·I_y(½, a) = F·cf(½, a, y), so
/// g = (p − ½) − centre. Both targets are exact in floating point, so a p
/// near ½ loses nothing to the rounding of ½ − centre. The tail is taken
/// where its fraction converges fast (x < (a + 1)/(a + 2.5)) and is the
/// better conditioned: its rounding, about ε·(1 − p)·ν/t² absolute (the
/// fraction's value grows like ν/t²), against the centre's, about ε/2;
/// (1 − p)·ν < t² is the measured balance.
fn excess(t: f64, nu: f64, ln_beta: f64, p: f64) -> (f64, f64, u32) {
    let (a, b) = (nu / 2.0, 0.5);
    let s = t * t;
    let (x, y) = (nu / (nu + s), s / (nu + s));
    let front = libm::exp(-a * libm::log1p(s / nu) + b * libm::log(y) - ln_beta);
    if x < (a + 1.0) / (a + b + 2.0) && (1.0 - p) * nu < s {
        let (value, terms) = fraction(a, b, x);
        (0.5 * front * value / a - (1.0 - p), front / t, terms)
    } else {
        let (value, terms) = fraction(b, a, y);
        ((p - 0.5) - front * value, front / t, terms)
    }
}

/// The standard normal quantile for p ∈ (½, 1): Halley on
/// g(z) = P(Z > z) − (1 − p) from Abramowitz & Stegun 26.2.23, with the
/// tail ½·erfc(z/√2), or near ½ the centre ½·erf(z/√2) against p − ½.
fn normal_quantile(p: f64) -> Refined {
    let q = 1.0 - p;
    halley(
        normal_deviate(q),
        || format!("normal quantile (p = {p})"),
        |z| {
            let g = if z < 1.0 {
                (p - 0.5) - 0.5 * libm::erf(z * FRAC_1_SQRT_2)
            } else {
                0.5 * libm::erfc(z * FRAC_1_SQRT_2) - q
            };
            Evaluation { g, density: FRAC_1_SQRT_2PI * libm::exp(-0.5 * z * z), curvature: z, terms: 0 }
        },
    )
}

/// t = z + g₁/ν + g₂/ν² + g₃/ν³ + g₄/ν⁴ with (w = z²)
/// g₁ = z(w + 1)/4, g₂ = z(5w² + 16w + 3)/96,
/// g₃ = z(3w³ + 19w² + 17w − 15)/384,
/// g₄ = z(79w⁴ + 776w³ + 1482w² − 1920w − 945)/92160
/// (Abramowitz & Stegun 26.7.5).
fn cornish_fisher(nu: f64, z: f64) -> f64 {
    let w = z * z;
    let g1 = (w + 1.0) / 4.0;
    let g2 = ((5.0 * w + 16.0) * w + 3.0) / 96.0;
    let g3 = (((3.0 * w + 19.0) * w + 17.0) * w - 15.0) / 384.0;
    let g4 = ((((79.0 * w + 776.0) * w + 1482.0) * w - 1920.0) * w - 945.0) / 92160.0;
    z + z * (g1 + (g2 + (g3 + g4 / nu) / nu) / nu) / nu
}

/// The continued fraction of I_x(a, b), evaluated by the modified Lentz
/// method: I_x(a, b) = x^a (1 − x)^b / (a·B(a, b)) · 1/(1 + d₁/(1 + d₂/(1 + …)))
/// with d_{2m+1} = −(a + m)(a + b + m)x / ((a + 2m)(a + 2m + 1)) and
/// d_{2m} = m(b − m)x / ((a + 2m − 1)(a + 2m)). Returns the fraction and
/// the terms (pairs) it took.
///
/// Reference: Numerical Recipes, 3rd ed., `Beta::betacf` (§6.4).
fn fraction(a: f64, b: f64, x: f64) -> (f64, u32) {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=FRACTION_TERMS_MAX {
        let m_f = f64::from(m);
        let even = m_f * (b - m_f) * x / ((a - 1.0 + 2.0 * m_f) * (a + 2.0 * m_f));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m_f) * (a + b + m_f) * x / ((a + 2.0 * m_f) * (a + 1.0 + 2.0 * m_f));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let factor = d * c;
        h *= factor;
        if (factor - 1.0).abs() <= FRACTION_TOLERANCE {
            return (h, m);
        }
    }
    panic!("the incomplete beta fraction (a = {a}, b = {b}, x = {x}) did not converge in {FRACTION_TERMS_MAX} terms");
}

/// ln B(a, ½) = ln Γ(½) + ln Γ(a) − ln Γ(a + ½), for a ≥ ½.
///
/// For large a the difference of two log-gammas near a·ln a would cancel
/// most of its digits, so from [`SERIES_A_MIN`] on it is the series
///
/// ```text
/// ln Γ(a + ½) − ln Γ(a) = ½ ln a − 1/(8a) + 1/(192a³) − 1/(640a⁵) + 17/(14336a⁷)
///                         − 31/(18432a⁹) + 691/(180224a¹¹) − 5461/(425984a¹³) + …
/// ```
///
/// whose coefficients are (2^{1−2k} − 2)·B_{2k}/(2k(2k − 1)).
fn ln_beta_half(a: f64) -> f64 {
    let ratio = if a < SERIES_A_MIN {
        libm::lgamma(a + 0.5) - libm::lgamma(a)
    } else {
        let w = 1.0 / (a * a);
        let series = -1.0 / 8.0
            + w * (1.0 / 192.0
                + w * (-1.0 / 640.0
                    + w * (17.0 / 14336.0 + w * (-31.0 / 18432.0 + w * (691.0 / 180_224.0 - w * 5461.0 / 425_984.0)))));
        0.5 * libm::log(a) + series / a
    };
    LN_SQRT_PI - ratio
}

/// Hill's approximation of the t quantile for the two-tailed probability
/// `two_tail` = 2·P(T > t), ν ≥ 3 (Algorithm 396), with the normal deviate
/// of Abramowitz & Stegun 26.2.23: a start that Halley's steps then make
/// exact.
fn hill(nu: f64, two_tail: f64) -> f64 {
    let a = 1.0 / (nu - 0.5);
    let b = 48.0 / (a * a);
    let mut c = ((20700.0 * a / b - 98.0) * a - 16.0) * a + 96.36;
    let d = ((94.5 / (b + c) - 3.0) / b + 1.0) * (a * PI / 2.0).sqrt() * nu;
    let x = d * two_tail;
    let mut y = libm::pow(x, 2.0 / nu);
    if y > 0.05 + a {
        // Asymptotic inverse expansion about the normal.
        let x = normal_deviate(0.5 * two_tail);
        y = x * x;
        if nu < 5.0 {
            c += 0.3 * (nu - 4.5) * (x + 0.6);
        }
        c += (((0.05 * d * x - 5.0) * x - 7.0) * x - 2.0) * x + b;
        y = (((((0.4 * y + 6.3) * y + 36.0) * y + 94.5) / c - y - 3.0) / b + 1.0) * x;
        y = libm::expm1(a * y * y);
    } else {
        y = ((1.0 / (((nu + 6.0) / (nu * y) - 0.089 * d - 0.822) * (nu + 2.0) * 3.0) + 0.5 / (nu + 4.0)) * y - 1.0)
            * (nu + 1.0)
            / (nu + 2.0)
            + 1.0 / y;
    }
    (nu * y).sqrt()
}

/// The normal deviate with upper tail `q` ∈ (0, ½], to 4.5e-4
/// (Abramowitz & Stegun 26.2.23).
fn normal_deviate(q: f64) -> f64 {
    let s = (-2.0 * libm::log(q)).sqrt();
    s - (2.515_517 + 0.802_853 * s + 0.010_328 * s * s)
        / (1.0 + 1.432_788 * s + 0.189_269 * s * s + 0.001_308 * s * s * s)
}

#[cfg(test)]
mod tests {
    use statrs::distribution::{ContinuousCDF, StudentsT};

    use super::*;

    fn relative(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    /// The rows of `t_quantiles.txt`: (df, p, t) with t to 22 digits.
    fn table() -> Vec<(u64, f64, f64)> {
        let number = |field: Option<&str>| field.and_then(|f| f.parse::<f64>().ok()).expect("a number");
        include_str!("t_quantiles.txt")
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let mut fields = line.split(' ');
                let df = fields.next().and_then(|f| f.parse().ok()).expect("df");
                (df, number(fields.next()), number(fields.next()))
            })
            .collect()
    }

    /// statrs' `StudentsT::inverse_cdf` over ν = 1..=200 and a spread to
    /// 4096, at the probabilities 0.5005, 0.75, 0.9, 0.95, 0.975, 0.99,
    /// 0.995, 0.9995 and a grid of step 1/400 to 0.9975. Checked against
    /// 36-digit references, statrs itself is within 1e-12 only for ν ≤ 26
    /// and p ≥ 0.51 (there by 7.7e-13 at worst); near p = ½ and for larger
    /// ν it is off by up to 3.1e-9 for ν ≤ 200, 1.3e-8 to ν = 1000 and
    /// 3.3e-8 to 4096, where [`the_reference_table_holds`] is the
    /// comparison.
    #[test]
    fn statrs_agrees_to_1e_12_where_it_is_accurate() {
        let mut ps = vec![0.5005, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9995];
        let mut p = 0.5 + 0.0025;
        while p < 0.999 {
            ps.push(p);
            p += 0.0025;
        }
        let mut dfs: Vec<u64> = (1..=200).collect();
        dfs.extend([250, 300, 400, 500, 750, 1000, 1500, 2000, 2048, 3000, 4000, 4095, 4096]);
        let (mut close, mut loose) = (0, 0);
        for &df in &dfs {
            #[allow(clippy::cast_precision_loss, reason = "small counts")]
            let statrs = StudentsT::new(0.0, 1.0, df as f64).expect("a distribution");
            for &p in &ps {
                let (ours, theirs) = (quantile(df, p), statrs.inverse_cdf(p));
                let difference = relative(ours, theirs);
                if df <= 26 && p >= 0.51 {
                    assert!(difference <= 1e-12, "ν = {df}, p = {p}: {ours} against statrs' {theirs}");
                    close += 1;
                } else {
                    assert!(difference <= 1e-7, "ν = {df}, p = {p}: {ours} against statrs' {theirs}");
                    loose += 1;
                }
            }
        }
        let upper = ps.iter().filter(|&&p| p >= 0.51).count();
        assert_eq!((close, close + loose), (26 * upper, dfs.len() * ps.len()), "every point was compared");
    }

    /// The 812 quantiles of `t_quantiles.txt` (ν from 1 to 10¹², p from
    /// 0.5005 to 1 − 10⁻¹², 22 digits from mpmath by
    /// scripts/t-quantile-table.py): within 4e-14 relative (2.3e-14 at
    /// worst, at ν = 4095).
    #[test]
    fn the_reference_table_holds() {
        let rows = table();
        assert_eq!(rows.len(), 812);
        for (df, p, t) in rows {
            let ours = quantile(df, p);
            assert!(relative(ours, t) <= 4e-14, "ν = {df}, p = {p}: {ours} against {t}");
        }
    }

    /// Published values, each also computed independently (mpmath, and the
    /// closed forms cot(π/40), cot(π/20) for ν = 1 and
    /// (2p − 1)/√(2p(1 − p)) for ν = 2), to the digits they are given with:
    /// ν = 1, 2 and 10 at 0.975 and ν = 1 at 0.95 to 16, ν = 30 at 0.995 to
    /// 14. The decimal p and the float p differ by ~1e-17, which moves t by
    /// at most 1e-15 here. (A value 2.2281388519649385 is in circulation for
    /// ν = 10 at 0.975; it is 9.6e-12 low.)
    #[test]
    fn published_values_hold() {
        for (df, p, published, tolerance) in [
            (1, 0.975, 12.706_204_736_174_705, 2e-15),
            (1, 0.95, 6.313_751_514_675_043, 2e-15),
            (2, 0.975, 4.302_652_729_749_464, 2e-15),
            (10, 0.975, 2.228_138_851_986_274, 2e-15),
            (30, 0.995, 2.749_995_653_567_2, 2e-14),
        ] {
            let ours = quantile(df, p);
            assert!(relative(ours, published) <= tolerance, "ν = {df}, p = {p}: {ours} against {published}");
        }
    }

    /// The quantiles the default config asks for (`ci_level` 0.95, so
    /// p = (1 + 0.95)/2, with ν = 1..=19 for a band of 20 rewards), bit for
    /// bit: any change of arithmetic fails here. Each is within 3.5 ulps of
    /// its 22-digit value in `t_quantiles.txt`.
    #[test]
    fn the_default_bands_quantiles_are_pinned_bit_for_bit() {
        const BITS: [u64; 19] = [
            0x4029_6993_aacc_4d1e,
            0x4011_35ea_98e1_46b9,
            0x4009_75a6_6893_c1a7,
            0x4006_3628_d9ef_b5df,
            0x4004_908d_359d_ff38,
            0x4003_9346_8546_e653,
            0x4002_eac0_1e9f_5b1b,
            0x4002_72b2_4bc9_2429,
            0x4002_18e5_dac5_0b24,
            0x4001_d33a_7661_d302,
            0x4001_9b9e_1b8c_996e,
            0x4001_6e35_6bbc_352c,
            0x4001_486f_5cb6_7d3e,
            0x4001_2885_ec4c_0665,
            0x4001_0d35_6b5a_06bd,
            0x4000_f590_e8d6_2dd8,
            0x4000_e0e6_fd5b_1563,
            0x4000_ceb0_36f2_3f2f,
            0x4000_be83_653b_666f,
        ];
        let p = (1.0 + 0.95) / 2.0;
        let bits: Vec<u64> = (1..=19).map(|df| quantile(df, p).to_bits()).collect();
        assert_eq!(bits, BITS);
    }

    /// Over ν = 3..=400 and a spread to 8191, and p from ½ + 2⁻⁵³ to
    /// 1 − 2⁻⁵³ (801 values, dense near ½ and geometric toward 1), the
    /// refinement takes at most 4 evaluations and a continued fraction at
    /// most 41 terms; the normal quantile at most 4 steps. The bounds
    /// asserted in the code (64 and 1000) are far above.
    #[test]
    fn the_iteration_bounds_hold_with_room_to_spare() {
        let mut ps: Vec<f64> = (1..400).map(|k| 0.5 + f64::from(k) / 800.0).collect();
        ps.extend((1..400).map(|k| 1.0 - 0.5 * libm::exp2(-f64::from(k) / 8.0)));
        ps.extend([0.5 + f64::EPSILON / 2.0, 1.0 - f64::EPSILON / 2.0, 1.0 - 1e-12]);
        assert!(ps.iter().all(|&p| p > 0.5 && p < 1.0));
        let mut dfs: Vec<u64> = (3..=400).collect();
        let mut df = 400.0_f64;
        while df < 8191.0 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "below 8191")]
            dfs.push(df as u64);
            df *= 1.07;
        }
        dfs.push(SERIES_NU_MIN - 1);
        let (mut steps, mut terms) = (0, 0);
        for &df in &dfs {
            for &p in &ps {
                #[allow(clippy::cast_precision_loss, reason = "small counts")]
                let refined = refine_t(df as f64, p);
                steps = steps.max(refined.steps);
                terms = terms.max(refined.terms);
            }
        }
        let normal_steps = ps.iter().map(|&p| normal_quantile(p).steps).max();
        assert_eq!((steps, terms, normal_steps), (4, 41, Some(4)));
    }

    /// Edges and shape: ½ gives 0, the lower half mirrors the upper, 1 and
    /// beyond give +∞, 0 and below −∞, NaN gives NaN; t rises with p and
    /// falls with ν, across the closed forms, the beta route and the series.
    #[test]
    fn the_quantile_is_odd_about_a_half_and_monotone() {
        for df in [1, 2, 3, 30, 8191, 8192, 1 << 40] {
            assert_eq!(quantile(df, 0.5), 0.0);
            assert_eq!(quantile(df, 0.25), -quantile(df, 0.75));
            assert_eq!((quantile(df, 1.0), quantile(df, 0.0)), (f64::INFINITY, f64::NEG_INFINITY));
            assert!(quantile(df, f64::NAN).is_nan());
            let rising: Vec<f64> = (1..200).map(|k| quantile(df, 0.5 + f64::from(k) / 400.0)).collect();
            assert!(rising.windows(2).all(|w| w[0] < w[1]), "ν = {df}: {rising:?}");
        }
        for p in [0.5005, 0.75, 0.975, 0.9995] {
            let falling: Vec<f64> =
                [1, 2, 3, 4, 100, 4096, 4097, 8191, 8192, 8193, 1 << 20, 1 << 40].map(|df| quantile(df, p)).to_vec();
            assert!(falling.windows(2).all(|w| w[0] > w[1]), "p = {p}: {falling:?}");
        }
    }
}
