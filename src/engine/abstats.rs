//! Statistics for experiment reports (REC.EXPERIMENT.STATS) and planning (REC.SAMPLESIZE).
//!
//! Each arm is a [`Proportion`]: trials (exposures) and successes (the experiment's metric). The
//! Bayesian side uses the Beta(1 + successes, 1 + failures) posterior of a uniform prior; the
//! frequentist side uses the observed rates.
//!
//! Numerics. statrs supplies the special functions (regularized incomplete beta, ln B, erfc and
//! its inverse, the chi-square distribution). Two of its weak spots are avoided on purpose:
//! - its Beta CDF is wrong when both shapes are large (`Beta(1e6, 1e6).cdf(0.5)` = 0.4912), so
//!   above [`EXPANSION_MIN_SHAPE`] the CDF and quantiles come from the Edgeworth and
//!   Cornish–Fisher expansions (skewness and kurtosis terms), accurate there to ~2e-8 absolute
//!   and ~1e-9 relative against scipy;
//! - its Beta inverse CDF never returns for shapes such as (1, 1e7), so quantiles are found
//!   here by a bracketed Newton iteration on the CDF, which always terminates.

use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::beta::{beta_reg, ln_beta};
use statrs::function::erf::{erfc, erfc_inv};
use std::f64::consts::{PI, SQRT_2};
use std::fmt;

/// Above this smaller shape parameter a Beta's CDF and quantiles use moment expansions.
pub const EXPANSION_MIN_SHAPE: f64 = 10_000.0;

/// Chance to beat control is summed exactly while the shorter sum has at most this many terms,
/// and taken from the normal approximation beyond (where both posteriors are nearly normal).
pub const EXACT_SUM_MAX_TERMS: f64 = 100_000.0;

/// Intervals each arm contributes to the probability-of-being-best quadrature grid.
const GRID_PER_ARM: usize = 100;

/// Posterior mass left outside each arm's part of the quadrature grid, per tail.
const GRID_TAIL: f64 = 1e-10;

/// Knobs of the report; the defaults are what REC.EXPERIMENT.STATS uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsConfig {
    /// Significance level of the tests and of the sample size.
    pub alpha: f64,
    /// Power the sample size is planned for.
    pub power: f64,
    /// Level of the credible and confidence intervals.
    pub interval_level: f64,
    /// N*: the per-arm sample size at which the sequential test is tuned to be sharpest.
    pub sequential_tuning_n: f64,
    /// A sample-ratio-mismatch p-value below this flags the split as broken.
    pub srm_threshold: f64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            alpha: 0.05,
            power: 0.8,
            interval_level: 0.95,
            sequential_tuning_n: 5000.0,
            srm_threshold: 0.001,
        }
    }
}

/// Why a sample size cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsError {
    Baseline,
    Mde,
    Alpha,
    Power,
    TooLarge,
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatsError::Baseline => "bad baseline — expected a rate strictly between 0 and 1",
            StatsError::Mde => {
                "bad mde — expected a non-zero relative change that keeps the rate between 0 and 1"
            }
            StatsError::Alpha => "bad alpha — expected a number strictly between 0 and 1",
            StatsError::Power => "bad power — expected a number strictly between 0 and 1",
            StatsError::TooLarge => "sample size too large — expected a larger mde",
        })
    }
}

/// Successes out of trials for one arm. Successes above trials are counted as trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Proportion {
    pub successes: u64,
    pub trials: u64,
}

impl Proportion {
    pub fn new(successes: u64, trials: u64) -> Self {
        Proportion { successes, trials }
    }

    fn s(&self) -> u64 {
        self.successes.min(self.trials)
    }

    pub fn failures(&self) -> u64 {
        self.trials - self.s()
    }

    /// The observed rate, or `None` without trials.
    pub fn rate(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.s() as f64 / self.trials as f64)
    }

    /// The Beta(1 + successes, 1 + failures) posterior of a uniform prior.
    pub fn posterior(&self) -> BetaPosterior {
        BetaPosterior::from_counts(self.s(), self.failures())
    }
}

// ---------------------------------------------------------------------------------------------
// The standard normal.

fn norm_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / SQRT_2)
}

/// The upper tail 1 - Φ(z), without cancellation.
fn norm_sf(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

fn norm_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

/// Φ⁻¹(p) for p in (0, 1).
fn norm_quantile(p: f64) -> f64 {
    -SQRT_2 * erfc_inv(2.0 * p)
}

// ---------------------------------------------------------------------------------------------
// Beta posteriors.

/// A Beta(a, b) posterior with integer shapes a = 1 + successes, b = 1 + failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaPosterior {
    a: f64,
    b: f64,
    ln_b: f64,
}

impl BetaPosterior {
    pub fn from_counts(successes: u64, failures: u64) -> Self {
        let a = 1.0 + successes as f64;
        let b = 1.0 + failures as f64;
        BetaPosterior {
            a,
            b,
            ln_b: ln_beta(a, b),
        }
    }

    pub fn alpha(&self) -> f64 {
        self.a
    }

    pub fn beta(&self) -> f64 {
        self.b
    }

    pub fn mean(&self) -> f64 {
        self.a / (self.a + self.b)
    }

    pub fn variance(&self) -> f64 {
        let n = self.a + self.b;
        self.a * self.b / (n * n * (n + 1.0))
    }

    fn sd(&self) -> f64 {
        self.variance().sqrt()
    }

    fn skewness(&self) -> f64 {
        let (a, b) = (self.a, self.b);
        2.0 * (b - a) * (a + b + 1.0).sqrt() / ((a + b + 2.0) * (a * b).sqrt())
    }

    fn excess_kurtosis(&self) -> f64 {
        let (a, b) = (self.a, self.b);
        6.0 * ((a - b) * (a - b) * (a + b + 1.0) - a * b * (a + b + 2.0))
            / (a * b * (a + b + 2.0) * (a + b + 3.0))
    }

    fn expanded(&self) -> bool {
        self.a.min(self.b) > EXPANSION_MIN_SHAPE
    }

    /// The Edgeworth coefficients (skewness / 6, excess kurtosis / 24, skewness² / 72).
    fn edgeworth(&self) -> (f64, f64, f64) {
        let g1 = self.skewness();
        (g1 / 6.0, self.excess_kurtosis() / 24.0, g1 * g1 / 72.0)
    }

    /// The density at `x`.
    pub fn pdf(&self, x: f64) -> f64 {
        if !(0.0..=1.0).contains(&x) {
            return 0.0;
        }
        if self.expanded() {
            // The derivative of the Edgeworth CDF, so quadratures stay consistent with it.
            let s = self.sd();
            let z = (x - self.mean()) / s;
            let (c2, c3, c5) = self.edgeworth();
            let z2 = z * z;
            let he3 = z * (z2 - 3.0);
            let he4 = z2 * z2 - 6.0 * z2 + 3.0;
            let he6 = z2 * z2 * z2 - 15.0 * z2 * z2 + 45.0 * z2 - 15.0;
            return (norm_pdf(z) * (1.0 + c2 * he3 + c3 * he4 + c5 * he6) / s).max(0.0);
        }
        // (a - 1) ln x with a = 1 is 0 even at x = 0.
        let la = if self.a == 1.0 {
            0.0
        } else {
            (self.a - 1.0) * x.ln()
        };
        let lb = if self.b == 1.0 {
            0.0
        } else {
            (self.b - 1.0) * (-x).ln_1p()
        };
        (la + lb - self.ln_b).exp()
    }

    /// P(X ≤ x).
    pub fn cdf(&self, x: f64) -> f64 {
        if x.is_nan() || x <= 0.0 {
            return 0.0;
        }
        if x >= 1.0 {
            return 1.0;
        }
        if self.expanded() {
            let z = (x - self.mean()) / self.sd();
            let (c2, c3, c5) = self.edgeworth();
            let z2 = z * z;
            let he2 = z2 - 1.0;
            let he3 = z * (z2 - 3.0);
            let he5 = z * (z2 * z2 - 10.0 * z2 + 15.0);
            return (norm_cdf(z) - norm_pdf(z) * (c2 * he2 + c3 * he3 + c5 * he5)).clamp(0.0, 1.0);
        }
        beta_reg(self.a, self.b, x)
    }

    /// The Cornish–Fisher quantile: mean + sd · w(z), with skewness and kurtosis corrections.
    fn cornish_fisher(&self, p: f64) -> f64 {
        let z = norm_quantile(p);
        let g1 = self.skewness();
        let g2 = self.excess_kurtosis();
        let z2 = z * z;
        let w = z + (z2 - 1.0) * g1 / 6.0 + z * (z2 - 3.0) * g2 / 24.0
            - z * (2.0 * z2 - 5.0) * g1 * g1 / 36.0;
        (self.mean() + self.sd() * w).clamp(0.0, 1.0)
    }

    /// The x with P(X ≤ x) = p.
    pub fn quantile(&self, p: f64) -> f64 {
        if p.is_nan() || p <= 0.0 {
            return 0.0;
        }
        if p >= 1.0 {
            return 1.0;
        }
        let guess = self.cornish_fisher(p);
        if self.expanded() {
            return guess;
        }
        if self.a > self.b {
            // Solve in the mirror image, where the quantile is near 0 rather than near 1.
            let mirror = BetaPosterior {
                a: self.b,
                b: self.a,
                ln_b: self.ln_b,
            };
            return 1.0 - mirror.quantile(1.0 - p);
        }
        // Newton on the CDF, kept inside a bracket that bisection shrinks when Newton strays.
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        let mut x = if guess > 0.0 && guess < 1.0 {
            guess
        } else {
            0.5
        };
        for _ in 0..300 {
            let f = self.cdf(x) - p;
            if f == 0.0 {
                return x;
            }
            if f < 0.0 {
                lo = x;
            } else {
                hi = x;
            }
            let d = self.pdf(x);
            let newton = x - f / d;
            let next = if d > 0.0 && newton > lo && newton < hi {
                newton
            } else if lo == 0.0 {
                // Geometric steps reach tiny quantiles (Beta(1, 1e9) at 0.025 is ~2.5e-11).
                hi * 0.01
            } else if hi > 4.0 * lo {
                (lo * hi).sqrt()
            } else {
                0.5 * (lo + hi)
            };
            if (next - x).abs() <= 1e-15 * x || hi - lo <= 1e-15 * hi {
                return next;
            }
            x = next;
        }
        x
    }

    /// The equal-tailed credible interval at `level` (e.g. 0.95).
    pub fn credible_interval(&self, level: f64) -> (f64, f64) {
        let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
        (self.quantile(tail), self.quantile(1.0 - tail))
    }
}

/// P(X > Y) for X ~ Beta(ax, bx), Y ~ Beta(ay, by), by Evan Miller's closed form for an integer
/// `ax` ("Formulas for Bayesian A/B Testing"):
/// Σ_{i=0}^{ax-1} B(ay + i, by + bx) / ((bx + i) B(1 + i, bx) B(ay, by)).
/// Consecutive terms differ by the factor (ay + i - 1)(bx + i - 1) / ((ay + by + bx + i - 1) i),
/// so the sum is accumulated in log space without a Beta function per term.
fn prob_greater_exact(x: &BetaPosterior, y: &BetaPosterior) -> f64 {
    let (ay, by, bx) = (y.a, y.b, x.b);
    let mut l = ln_beta(ay, by + bx) - y.ln_b;
    let (mut max, mut sum) = (l, 1.0_f64);
    let terms = x.a as u64;
    for i in 1..terms {
        let i = i as f64;
        l += ((ay + i - 1.0) / (ay + by + bx + i - 1.0) * ((bx + i - 1.0) / i)).ln();
        if l > max {
            sum = sum * (max - l).exp() + 1.0;
            max = l;
        } else {
            sum += (l - max).exp();
        }
    }
    (max + sum.ln()).exp().clamp(0.0, 1.0)
}

/// The posterior probability that `arm`'s rate exceeds `control`'s. Exact for these Beta
/// posteriors (the shorter of the two closed-form sums); the normal approximation once both
/// sums exceed [`EXACT_SUM_MAX_TERMS`] terms.
pub fn chance_to_beat(control: &BetaPosterior, arm: &BetaPosterior) -> f64 {
    if control.a.min(arm.a) > EXACT_SUM_MAX_TERMS {
        let d = arm.mean() - control.mean();
        return norm_cdf(d / (arm.variance() + control.variance()).sqrt());
    }
    if arm.a <= control.a {
        prob_greater_exact(arm, control)
    } else {
        1.0 - prob_greater_exact(control, arm)
    }
}

/// For each arm, the posterior probability that its rate is the largest:
/// P_k = ∫ f_k(x) Π_{j≠k} F_j(x) dx, by Simpson's rule on a grid that gives every arm
/// [`GRID_PER_ARM`] intervals across its own central 1 - 2e-10 of mass, so narrow and wide
/// posteriors are both resolved. The results sum to 1 within ~1e-7.
pub fn prob_best(arms: &[BetaPosterior]) -> Vec<f64> {
    if arms.len() < 2 {
        return vec![1.0; arms.len()];
    }
    let support: Vec<(f64, f64)> = arms
        .iter()
        .map(|p| (p.quantile(GRID_TAIL), p.quantile(1.0 - GRID_TAIL)))
        .collect();
    let mut grid: Vec<f64> = Vec::with_capacity(arms.len() * (GRID_PER_ARM + 1));
    for &(lo, hi) in &support {
        for i in 0..=GRID_PER_ARM {
            grid.push(lo + (hi - lo) * i as f64 / GRID_PER_ARM as f64);
        }
    }
    grid.retain(|x| x.is_finite());
    grid.sort_by(f64::total_cmp);
    grid.dedup();

    // Simpson nodes and weights: each interval's ends get h/6 and its midpoint 4h/6; a point
    // shared by two intervals is one node with both weights.
    let mut nodes: Vec<(f64, f64)> = Vec::with_capacity(2 * grid.len());
    for w in grid.windows(2) {
        if let [x0, x1] = *w {
            let h = x1 - x0;
            match nodes.last_mut() {
                Some(last) if last.0 == x0 => last.1 += h / 6.0,
                _ => nodes.push((x0, h / 6.0)),
            }
            nodes.push((0.5 * (x0 + x1), 4.0 * h / 6.0));
            nodes.push((x1, h / 6.0));
        }
    }

    let mut out = vec![0.0; arms.len()];
    let mut cdfs = vec![0.0; arms.len()];
    let mut suffix = vec![1.0; arms.len() + 1];
    for &(x, w) in &nodes {
        for ((c, p), &(lo, hi)) in cdfs.iter_mut().zip(arms).zip(&support) {
            *c = if x < lo {
                0.0
            } else if x > hi {
                1.0
            } else {
                p.cdf(x)
            };
        }
        for k in (0..arms.len()).rev() {
            let c = cdfs.get(k).copied().unwrap_or(1.0);
            let next = suffix.get(k + 1).copied().unwrap_or(1.0);
            if let Some(s) = suffix.get_mut(k) {
                *s = c * next;
            }
        }
        let mut prefix = 1.0;
        for (k, (p, &(lo, hi))) in arms.iter().zip(&support).enumerate() {
            let others = prefix * suffix.get(k + 1).copied().unwrap_or(1.0);
            if others > 0.0 && x >= lo && x <= hi {
                if let Some(o) = out.get_mut(k) {
                    *o += w * p.pdf(x) * others;
                }
            }
            prefix *= cdfs.get(k).copied().unwrap_or(1.0);
        }
    }
    for o in &mut out {
        *o = o.clamp(0.0, 1.0);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Frequentist comparisons against the control.

/// An estimate with a two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// Relative lift of `arm` over `control`, p_arm / p_control - 1, with a delta-method interval at
/// `level`: Var ≈ V_arm / p_c² + p_arm² V_c / p_c⁴ with V = p(1 - p)/n. `None` without trials or
/// with a zero control rate.
pub fn relative_lift(control: Proportion, arm: Proportion, level: f64) -> Option<Interval> {
    let pc = control.rate()?;
    let pa = arm.rate()?;
    if pc <= 0.0 {
        return None;
    }
    let vc = pc * (1.0 - pc) / control.trials as f64;
    let va = pa * (1.0 - pa) / arm.trials as f64;
    let se = (va / (pc * pc) + pa * pa * vc / (pc * pc * pc * pc)).sqrt();
    let z = norm_quantile(0.5 + level.clamp(0.0, 1.0) / 2.0);
    let estimate = pa / pc - 1.0;
    Some(Interval {
        estimate,
        low: estimate - z * se,
        high: estimate + z * se,
    })
}

/// Two-sided p-value of the pooled two-proportion z-test (the 2×2 chi-square test without
/// continuity correction). 1 when the pooled rate is 0 or 1; `None` without trials.
pub fn z_test_pvalue(control: Proportion, arm: Proportion) -> Option<f64> {
    if control.trials == 0 || arm.trials == 0 {
        return None;
    }
    let (nc, na) = (control.trials as f64, arm.trials as f64);
    let pooled = (control.s() + arm.s()) as f64 / (nc + na);
    let se = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / na)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return Some(1.0);
    }
    let z = (arm.s() as f64 / na - control.s() as f64 / nc) / se;
    Some((2.0 * norm_sf(z.abs())).min(1.0))
}

/// The mixture precision ρ (in observations per arm) that makes the normal-mixture boundary
/// narrowest at n = `tuning_n` for level `alpha`: ρ = N*/u with u solving u = -2 ln α + ln(1 + u)
/// (the stationary point of (n + ρ) ln((n + ρ)/(ρ α²)) in ρ; Howard et al. 2021, §3.5).
fn mixture_rho(tuning_n: f64, alpha: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    let mut u = l;
    for _ in 0..100 {
        let next = l + u.ln_1p();
        if (next - u).abs() < 1e-14 * u {
            break;
        }
        u = next;
    }
    tuning_n / u
}

/// An always-valid p-value for "arm's rate equals control's" that may be checked after every
/// observation without inflating false positives: the normal-mixture sequential probability
/// ratio test (mSPRT, Johari et al. 2017; the dual of Howard et al.'s normal-mixture confidence
/// sequence). With the difference d = p_arm - p_c, its variance under the null from the pooled
/// rate p̄, V = p̄(1 - p̄)(1/n_c + 1/n_arm), and the mixing prior d ~ N(0, τ²),
/// τ² = 2 p̄(1 - p̄) / ρ (ρ from [`mixture_rho`] for N* = `tuning_n` and `alpha`):
///
/// Λ = sqrt(V / (V + τ²)) · exp(τ² d² / (2 V (V + τ²))),  p = min(1, 1/Λ).
///
/// Under the null, P(Λ ever reaches 1/α) ≤ α (Ville's inequality), so stopping the first time
/// p ≤ α keeps the false-positive rate at α. 1 when the pooled rate is 0 or 1; `None` without
/// trials.
pub fn sequential_pvalue(
    control: Proportion,
    arm: Proportion,
    tuning_n: f64,
    alpha: f64,
) -> Option<f64> {
    if control.trials == 0 || arm.trials == 0 {
        return None;
    }
    let (nc, na) = (control.trials as f64, arm.trials as f64);
    let pooled = (control.s() + arm.s()) as f64 / (nc + na);
    let var1 = pooled * (1.0 - pooled);
    let v = var1 * (1.0 / nc + 1.0 / na);
    let rho = mixture_rho(tuning_n.max(1.0), alpha.clamp(1e-12, 0.5));
    let tau2 = 2.0 * var1 / rho;
    if v.is_nan() || v <= 0.0 || tau2.is_nan() || tau2 <= 0.0 {
        return Some(1.0);
    }
    let d = arm.s() as f64 / na - control.s() as f64 / nc;
    let ln_lambda = 0.5 * (v / (v + tau2)).ln() + tau2 * d * d / (2.0 * v * (v + tau2));
    Some((-ln_lambda).exp().min(1.0))
}

/// Sample-ratio-mismatch p-value: the chi-square goodness-of-fit test of the users per arm
/// against the configured shares (any positive weights; they are normalized). An arm with no
/// share that has users gives 0. `None` without users or with fewer than two arms that have a
/// share.
pub fn srm_pvalue(observed: &[u64], weights: &[f64]) -> Option<f64> {
    if observed.len() != weights.len() {
        return None;
    }
    let clean = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let total_w: f64 = weights.iter().map(|&w| clean(w)).sum();
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    if total_w.is_nan() || total_w <= 0.0 || total <= 0.0 {
        return None;
    }
    let (mut chi2, mut cells) = (0.0, 0usize);
    for (&o, &w) in observed.iter().zip(weights) {
        let share = clean(w) / total_w;
        if share <= 0.0 {
            if o > 0 {
                return Some(0.0);
            }
            continue;
        }
        let e = total * share;
        chi2 += (o as f64 - e) * (o as f64 - e) / e;
        cells += 1;
    }
    if cells < 2 {
        return None;
    }
    if !chi2.is_finite() {
        return Some(0.0);
    }
    let dist = ChiSquared::new((cells - 1) as f64).ok()?;
    Some(dist.sf(chi2).clamp(0.0, 1.0))
}

/// Users per arm to detect a relative change `mde` from `baseline` with a two-sided test at
/// `alpha` and the given `power`, rounded up:
/// n = (z_{1-α/2} + z_power)² · 2 p̄(1 - p̄) / (p2 - p1)², p2 = p1 (1 + mde), p̄ = (p1 + p2)/2.
pub fn sample_size(baseline: f64, mde: f64, alpha: f64, power: f64) -> Result<u64, StatsError> {
    if !(baseline > 0.0 && baseline < 1.0) {
        return Err(StatsError::Baseline);
    }
    let p2 = baseline * (1.0 + mde);
    if !(mde.is_finite() && mde != 0.0 && p2 > 0.0 && p2 < 1.0) {
        return Err(StatsError::Mde);
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::Alpha);
    }
    if !(power > 0.0 && power < 1.0) {
        return Err(StatsError::Power);
    }
    let z = norm_quantile(1.0 - alpha / 2.0) + norm_quantile(power);
    let p = (baseline + p2) / 2.0;
    let n = (z * z * 2.0 * p * (1.0 - p) / ((p2 - baseline) * (p2 - baseline))).ceil();
    // Beyond 2^53 the count is no longer an exact integer.
    if !(n.is_finite() && n < 9.007_199_254_740_992e15) {
        return Err(StatsError::TooLarge);
    }
    Ok((n as u64).max(1))
}

// ---------------------------------------------------------------------------------------------
// The verdict and the whole report.

/// What the report concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough data yet: the planned sample is not reached and no sequential test decided.
    Collecting,
    /// This arm (0 is the control) is the one to keep.
    Winner(usize),
    /// The planned sample is reached and no arm beats the control.
    NoDifference,
    /// The users per arm do not match the configured split: the data cannot be trusted.
    Srm,
}

/// The verdict for arms (the first is the control), given the required trials per arm and the
/// SRM p-value (`None` where the split is not fixed, e.g. for a bandit).
///
/// - `srm` whenever the SRM p-value is below `cfg.srm_threshold`, at any time;
/// - an arm differs from the control when its sequential p-value is below α, or, once every arm
///   has the required trials, when its z-test p-value is;
/// - `winner <arm>`: the best-rated arm among those that beat the control; the control when
///   every other arm is worse than it;
/// - `no difference` once the required sample is reached and nothing beats the control;
/// - `collecting` otherwise.
pub fn verdict(
    arms: &[Proportion],
    required_per_arm: Option<u64>,
    srm: Option<f64>,
    cfg: &StatsConfig,
) -> Verdict {
    if srm.is_some_and(|p| p < cfg.srm_threshold) {
        return Verdict::Srm;
    }
    let Some(control) = arms.first() else {
        return Verdict::Collecting;
    };
    if arms.len() < 2 {
        return Verdict::Collecting;
    }
    let reached = required_per_arm.is_some_and(|n| arms.iter().all(|a| a.trials >= n));
    let below = |p: Option<f64>| p.is_some_and(|p| p < cfg.alpha);
    let control_rate = control.rate().unwrap_or(0.0);
    let mut best: Option<(usize, f64)> = None;
    let mut worse = 0;
    for (i, arm) in arms.iter().enumerate().skip(1) {
        let seq = sequential_pvalue(*control, *arm, cfg.sequential_tuning_n, cfg.alpha);
        let differs = below(seq) || (reached && below(z_test_pvalue(*control, *arm)));
        if !differs {
            continue;
        }
        let rate = arm.rate().unwrap_or(0.0);
        if rate > control_rate {
            if best.is_none_or(|(_, r)| rate > r) {
                best = Some((i, rate));
            }
        } else if rate < control_rate {
            worse += 1;
        }
    }
    match best {
        Some((i, _)) => Verdict::Winner(i),
        None if worse == arms.len() - 1 => Verdict::Winner(0),
        None if reached => Verdict::NoDifference,
        None => Verdict::Collecting,
    }
}

/// One arm's counts as the report needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArmInput {
    /// Exposures the metric is a rate of.
    pub trials: u64,
    /// Exposures with the metric.
    pub successes: u64,
    /// Distinct users assigned (for the sample-ratio check).
    pub users: u64,
}

/// One arm's statistics. Comparisons are against the control (arm 0) and are `None` for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmAnalysis {
    pub rate: Option<f64>,
    pub posterior_mean: f64,
    pub credible_low: f64,
    pub credible_high: f64,
    pub chance_to_beat_control: Option<f64>,
    pub prob_best: f64,
    pub lift: Option<Interval>,
    pub z_pvalue: Option<f64>,
    pub sequential_pvalue: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub arms: Vec<ArmAnalysis>,
    pub srm_pvalue: Option<f64>,
    /// Trials per arm the MDE needs at the control's observed rate (`None` until it is known).
    pub required_per_arm: Option<u64>,
    pub verdict: Verdict,
}

/// Computes every statistic of the report. `weights` are the configured split for the SRM check
/// (`None` when the allocation is adaptive), `mde` the relative effect the test is planned for.
pub fn analyze(
    arms: &[ArmInput],
    weights: Option<&[f64]>,
    mde: f64,
    cfg: &StatsConfig,
) -> Analysis {
    let props: Vec<Proportion> = arms
        .iter()
        .map(|a| Proportion::new(a.successes, a.trials))
        .collect();
    let posts: Vec<BetaPosterior> = props.iter().map(Proportion::posterior).collect();
    let best = prob_best(&posts);
    let control = props.first().copied().unwrap_or_default();
    let control_post = control.posterior();
    let out = props
        .iter()
        .zip(&posts)
        .zip(&best)
        .enumerate()
        .map(|(i, ((p, post), &pb))| {
            let (lo, hi) = post.credible_interval(cfg.interval_level);
            let vs = i > 0;
            ArmAnalysis {
                rate: p.rate(),
                posterior_mean: post.mean(),
                credible_low: lo,
                credible_high: hi,
                chance_to_beat_control: vs.then(|| chance_to_beat(&control_post, post)),
                prob_best: pb,
                lift: if vs {
                    relative_lift(control, *p, cfg.interval_level)
                } else {
                    None
                },
                z_pvalue: if vs { z_test_pvalue(control, *p) } else { None },
                sequential_pvalue: if vs {
                    sequential_pvalue(control, *p, cfg.sequential_tuning_n, cfg.alpha)
                } else {
                    None
                },
            }
        })
        .collect();
    let users: Vec<u64> = arms.iter().map(|a| a.users).collect();
    let srm = weights.and_then(|w| srm_pvalue(&users, w));
    let required = control
        .rate()
        .and_then(|r| sample_size(r, mde, cfg.alpha, cfg.power).ok());
    Analysis {
        arms: out,
        srm_pvalue: srm,
        required_per_arm: required,
        verdict: verdict(&props, required, srm, cfg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (successes, failures) or (successes, trials), as each table says.
    type Counts = (u64, u64);

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs().max(1e-300)
    }

    #[track_caller]
    fn assert_rel(got: f64, want: f64, rel: f64) {
        assert!(
            close(got, want, rel),
            "got {got:e}, want {want:e} (rel err {:e})",
            ((got - want) / want).abs()
        );
    }

    #[test]
    fn sample_size_matches_the_issue() {
        assert_eq!(sample_size(0.05, 0.10, 0.05, 0.8), Ok(31_235));
        assert_eq!(sample_size(0.0, 0.1, 0.05, 0.8), Err(StatsError::Baseline));
        assert_eq!(sample_size(0.5, 1.0, 0.05, 0.8), Err(StatsError::Mde));
        assert_eq!(sample_size(0.5, 0.0, 0.05, 0.8), Err(StatsError::Mde));
        assert_eq!(sample_size(0.5, 0.1, 1.0, 0.8), Err(StatsError::Alpha));
        assert_eq!(
            sample_size(0.5, 0.1, 0.05, f64::NAN),
            Err(StatsError::Power)
        );
        assert_eq!(
            sample_size(0.5, 1e-12, 0.05, 0.8),
            Err(StatsError::TooLarge)
        );
    }

    #[test]
    fn mixture_rho_minimizes_the_boundary_at_n_star() {
        // Reference: scipy.optimize.minimize_scalar of (m+r)*log((m+r)/(r*a*a)), m=5000, a=0.05,
        // bounded to (1, 1e6), xatol 1e-9: 608.8674450842981.
        assert_rel(mixture_rho(5000.0, 0.05), 608.867_445_084_298_1, 1e-8);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let none = Proportion::new(0, 0);
        let p = Proportion::new(5, 100);
        assert_eq!(z_test_pvalue(none, p), None);
        assert_eq!(sequential_pvalue(p, none, 5000.0, 0.05), None);
        assert_eq!(relative_lift(Proportion::new(0, 10), p, 0.95), None);
        assert_eq!(
            z_test_pvalue(Proportion::new(0, 10), Proportion::new(0, 10)),
            Some(1.0)
        );
        assert_eq!(srm_pvalue(&[0, 0], &[1.0, 1.0]), None);
        assert_eq!(srm_pvalue(&[5, 1], &[1.0, 0.0]), Some(0.0));
        assert_eq!(srm_pvalue(&[5], &[1.0, 1.0]), None);
        // More successes than trials count as trials.
        assert_eq!(Proportion::new(7, 5).rate(), Some(1.0));
        let b = BetaPosterior::from_counts(0, 0);
        assert_eq!(b.quantile(f64::NAN), 0.0);
        assert_eq!(b.cdf(f64::NAN), 0.0);
        assert!(prob_best(&[]).is_empty());
        assert_eq!(prob_best(&[b]), vec![1.0]);
        let a = analyze(&[], None, 0.1, &StatsConfig::default());
        assert_eq!(a.verdict, Verdict::Collecting);
        let huge = BetaPosterior::from_counts(u64::MAX, u64::MAX);
        assert!(huge.quantile(0.5).is_finite());
    }

    // Reference values below were computed with scipy 1.17.1 (numpy 2); each table's comment
    // gives the exact Python that produced it. Counts are (successes, failures) unless noted.

    // python3 -c "from scipy.stats import beta; print(beta.ppf([0.025, 0.975], 1+s, 1+f))"
    const CREDIBLE: &[(u64, u64, f64, f64)] = &[
        (0, 0, 0.025, 0.975),
        (3, 47, 0.021783562056268992, 0.16242221807205048),
        (50, 950, 0.03816683365052648, 0.06532569368110479),
        (120, 2380, 0.040304684665313506, 0.057101489767995),
        (1000, 19000, 0.04706629590030123, 0.05310891684787565),
        (9000, 171000, 0.04900287003203022, 0.05101660111436776),
        (20000, 380000, 0.04932896609506561, 0.05067979601560587),
        (100000, 1900000, 0.049698824678059896, 0.0503029277564839),
        (0, 100000, 2.531755160384915e-07, 3.688774528727501e-05),
        (7, 1000000, 3.4538106701683845e-06, 1.4422506454707606e-05),
        (999000, 1000, 0.9989360829565678, 0.9990600306730381),
        (5, 999999995, 2.201894254369523e-09, 1.1668332109746986e-08),
    ];

    #[test]
    fn credible_intervals_match_scipy() {
        for &(s, f, lo, hi) in CREDIBLE {
            let post = BetaPosterior::from_counts(s, f);
            let (l, h) = post.credible_interval(0.95);
            // statrs's incomplete beta is good to ~1e-6 absolute when b reaches 1e9, so that
            // row's quantiles (near 1e-9) are only checked to 1e-4 relative.
            let tol = if f >= 100_000_000 { 1e-4 } else { 1e-7 };
            assert!(
                close(l, lo, tol) && close(h, hi, tol),
                "{s}/{f}: {l:e} {h:e}"
            );
            assert_rel(post.mean(), (1 + s) as f64 / (2 + s + f) as f64, 1e-15);
        }
    }

    // from scipy.stats import beta; from scipy.integrate import quad
    // A = beta(1+sc, 1+fc); B = beta(1+st, 1+ft); lo, hi = B.ppf(1e-14), B.isf(1e-14)
    // pts = [x for x in A.ppf([1e-6, 0.01, 0.5, 0.99, 1-1e-6]) if lo < x < hi] + [B.mean()]
    // quad(lambda x: B.pdf(x) * A.cdf(x), lo, hi, points=sorted(pts), epsabs=1e-14,
    //      epsrel=1e-13, limit=2000)[0]
    const CHANCE_TO_BEAT: &[(Counts, Counts, f64)] = &[
        ((10, 90), (15, 85), 0.853283789933956),
        ((50, 950), (65, 935), 0.9244803789025641),
        ((0, 0), (0, 0), 0.4999999999999899),
        ((120, 2380), (100, 2400), 0.08433182013703892),
        ((2000, 38000), (2100, 37900), 0.9455574191762754),
        ((60000, 940000), (60500, 939500), 0.931337867993992),
        ((150000, 2850000), (151000, 2849000), 0.9692733440542453),
        ((5, 1000000), (9, 1000000), 0.8491201773120207),
        ((0, 10), (3, 7), 0.9548872180451025),
    ];

    #[test]
    fn chance_to_beat_matches_scipy() {
        for &((sc, fc), (st, ft), want) in CHANCE_TO_BEAT {
            let c = BetaPosterior::from_counts(sc, fc);
            let t = BetaPosterior::from_counts(st, ft);
            // The last exact sum has 150,001 terms: the normal approximation is used there.
            let tol = if sc > 100_000 { 1e-4 } else { 1e-7 };
            assert!(
                close(chance_to_beat(&c, &t), want, tol),
                "{sc}/{fc} vs {st}/{ft}: {}",
                chance_to_beat(&c, &t)
            );
            assert!(close(chance_to_beat(&t, &c), 1.0 - want, tol * 20.0));
        }
    }

    // ds = [beta(1+s, 1+f) for s, f in arms]; for each k, d = ds[k]:
    // lo, hi = d.ppf(1e-14), d.isf(1e-14)
    // pts = sorted({x for j, e in enumerate(ds) if j != k
    //               for x in e.ppf([1e-6, 0.01, 0.5, 0.99, 1-1e-6]) if lo < x < hi} | {d.mean()})
    // quad(lambda x: d.pdf(x) * np.prod([e.cdf(x) for j, e in enumerate(ds) if j != k]),
    //      lo, hi, points=pts, epsabs=1e-14, epsrel=1e-12, limit=2000)[0]
    #[allow(clippy::type_complexity)]
    const PROB_BEST: &[(&[(u64, u64)], &[f64])] = &[
        (
            &[(10, 90), (15, 85), (12, 88)],
            &[0.09710462736979089, 0.6645701169822854, 0.2383252556478937],
        ),
        (
            &[(500, 9500), (530, 9470), (480, 9520)],
            &[0.15892018466212335, 0.8057361705388055, 0.03534364479904098],
        ),
        (&[(0, 0), (0, 0)], &[0.4999999999999899, 0.4999999999999899]),
        (
            &[(1, 999), (3, 997), (2, 998), (0, 1000)],
            &[
                0.11427574754519736,
                0.569128937753887,
                0.29011798531724514,
                0.02647732938363104,
            ],
        ),
        (
            &[(20000, 380000), (20300, 379700), (19900, 380100)],
            &[0.05974864459000731, 0.924295021146797, 0.01595633426316987],
        ),
        (
            &[(50, 950), (65, 935)],
            &[0.07551962109741599, 0.9244803789025641],
        ),
    ];

    #[test]
    fn prob_best_matches_scipy() {
        for &(arms, want) in PROB_BEST {
            let posts: Vec<BetaPosterior> = arms
                .iter()
                .map(|&(s, f)| BetaPosterior::from_counts(s, f))
                .collect();
            let got = prob_best(&posts);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{arms:?}: {got:?}");
            }
            assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn prob_best_of_two_is_chance_to_beat() {
        for &((sc, fc), (st, ft), _) in CHANCE_TO_BEAT.iter().take(6) {
            let c = BetaPosterior::from_counts(sc, fc);
            let t = BetaPosterior::from_counts(st, ft);
            let pb = prob_best(&[c, t]);
            assert!((pb[1] - chance_to_beat(&c, &t)).abs() < 1e-6, "{pb:?}");
        }
    }

    // pc = sc/nc; pt = st/nt; vc = pc*(1-pc)/nc; vt = pt*(1-pt)/nt
    // se = np.sqrt(vt/pc**2 + pt**2*vc/pc**4); z = norm.ppf(0.975); e = pt/pc - 1
    // (e, e - z*se, e + z*se). Counts are (successes, trials).
    const LIFT: &[(Counts, Counts, f64, f64, f64)] = &[
        (
            (50, 1000),
            (65, 1000),
            0.30000000000000004,
            -0.16554817867065325,
            0.7655481786706533,
        ),
        (
            (120, 2500),
            (100, 2500),
            -0.16666666666666663,
            -0.382938065719492,
            0.049604732386158756,
        ),
        (
            (30, 700),
            (45, 640),
            0.640625,
            -0.09660605212320406,
            1.377856052123204,
        ),
    ];

    #[test]
    fn lift_matches_scipy() {
        for &((sc, nc), (st, nt), e, lo, hi) in LIFT {
            let got =
                relative_lift(Proportion::new(sc, nc), Proportion::new(st, nt), 0.95).unwrap();
            assert_rel(got.estimate, e, 1e-12);
            assert_rel(got.low, lo, 1e-9);
            assert_rel(got.high, hi, 1e-9);
        }
    }

    // scipy.stats.chi2_contingency([[sc, nc-sc], [st, nt-st]], correction=False)[1]: the 2x2
    // chi-square test is the pooled two-proportion z-test. Counts are (successes, trials).
    const Z_TEST: &[(Counts, Counts, f64)] = &[
        ((50, 1000), (65, 1000), 0.1496431063703685),
        ((120, 2500), (100, 2500), 0.1678698458487875),
        ((30, 700), (45, 640), 0.028965952688369493),
        ((500, 10000), (600, 10000), 0.0019246872509622542),
        ((0, 50), (5, 50), 0.021781462791119595),
    ];

    #[test]
    fn z_test_matches_scipy() {
        for &((sc, nc), (st, nt), p) in Z_TEST {
            let got = z_test_pvalue(Proportion::new(sc, nc), Proportion::new(st, nt)).unwrap();
            assert_rel(got, p, 1e-9);
        }
    }

    // rho = minimize_scalar(lambda q: (m+q)*np.log((m+q)/(q*0.05**2)), bounds=(1e-3, 1e9),
    //                        method='bounded', options={'xatol': 1e-10}).x   # m = N*
    // pb = (sc+st)/(nc+nt); V = pb*(1-pb)*(1/nc+1/nt); tau2 = 2*pb*(1-pb)/rho; d = st/nt-sc/nc
    // lam = np.sqrt(V/(V+tau2)) * np.exp(tau2*d*d/(2*V*(V+tau2))); min(1, 1/lam)
    // Counts are (successes, trials).
    const SEQUENTIAL: &[(Counts, Counts, f64, f64)] = &[
        ((50, 1000), (65, 1000), 5000.0, 0.8527438584769377),
        ((500, 10000), (600, 10000), 5000.0, 0.0448233953023224),
        ((5000, 100000), (5300, 100000), 5000.0, 0.13204988134219167),
        ((500, 10000), (600, 10000), 1000.0, 0.07870916750493798),
        ((300, 6000), (260, 4000), 5000.0, 0.0320514952799393),
        ((4000, 100000), (4150, 100000), 20000.0, 1.0),
    ];

    #[test]
    fn sequential_pvalue_matches_scipy() {
        for &((sc, nc), (st, nt), n_star, p) in SEQUENTIAL {
            let got = sequential_pvalue(
                Proportion::new(sc, nc),
                Proportion::new(st, nt),
                n_star,
                0.05,
            )
            .unwrap();
            // rho comes from a bounded scalar minimizer on the scipy side (~1e-9 relative).
            assert_rel(got, p, 1e-6);
        }
    }

    /// A/A tests peeked at after every 100 users per arm: the always-valid p-value keeps the
    /// chance of ever crossing 0.05 near or below 5 %, while the z-test's peeking inflates it.
    #[test]
    fn sequential_pvalue_survives_peeking() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(20_26);
        let (runs, peeks, step) = (300, 100, 100u64);
        let (mut seq_hits, mut z_hits) = (0, 0);
        for _ in 0..runs {
            let (mut a, mut b) = (Proportion::default(), Proportion::default());
            let (mut seq_hit, mut z_hit) = (false, false);
            for _ in 0..peeks {
                for _ in 0..step {
                    a.trials += 1;
                    b.trials += 1;
                    a.successes += u64::from(rng.gen_bool(0.1));
                    b.successes += u64::from(rng.gen_bool(0.1));
                }
                seq_hit |= sequential_pvalue(a, b, 5000.0, 0.05).unwrap() < 0.05;
                z_hit |= z_test_pvalue(a, b).unwrap() < 0.05;
            }
            seq_hits += usize::from(seq_hit);
            z_hits += usize::from(z_hit);
        }
        let (seq_rate, z_rate) = (seq_hits as f64 / runs as f64, z_hits as f64 / runs as f64);
        assert!(seq_rate <= 0.07, "sequential false positives {seq_rate}");
        assert!(
            z_rate >= 0.15,
            "peeking at the z-test should inflate it, got {z_rate}"
        );
    }

    // o, w = np.array(obs, float), np.array(weights, float)
    // scipy.stats.chisquare(o, f_exp=o.sum()*w/w.sum()).pvalue
    #[allow(clippy::type_complexity)]
    const SRM: &[(&[u64], &[f64], f64)] = &[
        (&[5000, 5100], &[0.5, 0.5], 0.3197181768128675),
        (&[3000, 2000, 5200], &[0.3, 0.2, 0.5], 0.14074798704123068),
        (&[10000, 10500], &[1.0, 1.0], 0.00047914643458730067),
        (&[700, 300], &[70.0, 30.0], 1.0),
        (&[640, 360], &[0.7, 0.3], 3.4671076872696563e-05),
    ];

    #[test]
    fn srm_matches_scipy() {
        for &(obs, w, p) in SRM {
            assert_rel(srm_pvalue(obs, w).unwrap(), p, 1e-9);
        }
    }

    // p2 = b*(1+mde); pb = (b+p2)/2
    // n = (norm.ppf(1-a/2) + norm.ppf(power))**2 * 2*pb*(1-pb) / (p2-b)**2; int(np.ceil(n))
    // (the unrounded n follows each row).
    const SAMPLE_SIZE: &[(f64, f64, f64, f64, u64)] = &[
        (0.05, 0.1, 0.05, 0.8, 31235), // 31234.616902842143
        (0.1, 0.05, 0.05, 0.8, 57764), // 57763.83040494201
        (0.02, 0.2, 0.01, 0.9, 40019), // 40018.111791693926
        (0.3, -0.1, 0.05, 0.8, 3555),  // 3554.2343730377524
        (0.5, 0.02, 0.1, 0.5, 13527),  // 13526.364498749992
    ];

    #[test]
    fn sample_size_matches_scipy() {
        for &(b, mde, a, power, n) in SAMPLE_SIZE {
            assert_eq!(
                sample_size(b, mde, a, power),
                Ok(n),
                "{b} {mde} {a} {power}"
            );
        }
    }

    #[test]
    fn large_shapes_use_the_expansions_consistently() {
        // scipy: beta.cdf(0.5, 1e6+1, 1e6+1) = 0.5 and beta.cdf(0.0101, 20001, 1980001) =
        // 0.921031269319416 (python3 -c "from scipy.stats import beta;
        // print(beta.cdf(0.0101, 20001, 1980001))").
        let sym = BetaPosterior::from_counts(1_000_000, 1_000_000);
        assert!((sym.cdf(0.5) - 0.5).abs() < 1e-12);
        let big = BetaPosterior::from_counts(20_000, 1_980_000);
        assert!((big.cdf(0.0101) - 0.921_031_269_319_416).abs() < 1e-7);
        // The quantile inverts the CDF on both sides of the switch.
        for post in [sym, big, BetaPosterior::from_counts(9_999, 190_000)] {
            for p in [0.001, 0.025, 0.5, 0.975] {
                assert!((post.cdf(post.quantile(p)) - p).abs() < 1e-7);
            }
        }
    }

    fn arm(successes: u64, trials: u64) -> Proportion {
        Proportion::new(successes, trials)
    }

    #[test]
    fn verdicts() {
        let cfg = StatsConfig::default();
        let need = sample_size(0.05, 0.1, 0.05, 0.8).ok();
        // Too early to tell.
        assert_eq!(
            verdict(&[arm(50, 1000), arm(55, 1000)], need, Some(0.5), &cfg),
            Verdict::Collecting
        );
        // A broken split is reported at any time.
        assert_eq!(
            verdict(&[arm(50, 1000), arm(55, 1000)], need, Some(1e-4), &cfg),
            Verdict::Srm
        );
        // A large effect is decided by the sequential test before the planned sample.
        assert_eq!(
            verdict(&[arm(500, 10_000), arm(800, 10_000)], need, None, &cfg),
            Verdict::Winner(1)
        );
        // ... in either direction: every arm worse than the control makes the control win.
        assert_eq!(
            verdict(&[arm(800, 10_000), arm(500, 10_000)], need, None, &cfg),
            Verdict::Winner(0)
        );
        // With the planned sample, the fixed-horizon test decides: p = 0.0046 here
        // (chi2_contingency([[1600, 30400], [1760, 30240]], correction=False)[1]).
        let (c, t) = (arm(1600, 32_000), arm(1760, 32_000));
        assert!(z_test_pvalue(c, t).unwrap() < 0.01);
        assert!(sequential_pvalue(c, t, 5000.0, 0.05).unwrap() > 0.05);
        assert_eq!(verdict(&[c, t], need, None, &cfg), Verdict::Winner(1));
        assert_eq!(
            verdict(&[arm(1600, 32_000), arm(1610, 32_000)], need, None, &cfg),
            Verdict::NoDifference
        );
        // Several arms: the best of those that beat the control.
        let arms = [
            arm(500, 10_000),
            arm(700, 10_000),
            arm(800, 10_000),
            arm(510, 10_000),
        ];
        assert_eq!(verdict(&arms, need, None, &cfg), Verdict::Winner(2));
        // Without a known requirement only the sequential test can decide.
        assert_eq!(
            verdict(&[arm(0, 100), arm(0, 100)], None, None, &cfg),
            Verdict::Collecting
        );
        assert_eq!(
            verdict(&[arm(5, 10)], need, None, &cfg),
            Verdict::Collecting
        );
    }

    #[test]
    fn analysis_fills_every_field() {
        let cfg = StatsConfig::default();
        let arms = [
            ArmInput {
                trials: 1000,
                successes: 50,
                users: 400,
            },
            ArmInput {
                trials: 1000,
                successes: 65,
                users: 410,
            },
        ];
        let a = analyze(&arms, Some(&[1.0, 1.0]), 0.1, &cfg);
        assert_eq!(a.arms.len(), 2);
        let (c, t) = (&a.arms[0], &a.arms[1]);
        assert_eq!(c.rate, Some(0.05));
        assert!(c.chance_to_beat_control.is_none() && c.lift.is_none() && c.z_pvalue.is_none());
        assert!(c.sequential_pvalue.is_none());
        // Values from the scipy tables above.
        assert_rel(
            t.chance_to_beat_control.unwrap(),
            0.924_480_378_902_564_1,
            1e-7,
        );
        assert_rel(t.z_pvalue.unwrap(), 0.149_643_106_370_368_5, 1e-9);
        assert_rel(t.sequential_pvalue.unwrap(), 0.852_743_858_476_937_7, 1e-6);
        assert_rel(t.lift.unwrap().estimate, 0.3, 1e-12);
        assert!((c.prob_best + t.prob_best - 1.0).abs() < 1e-6);
        assert!(c.credible_low < c.posterior_mean && c.posterior_mean < c.credible_high);
        assert_eq!(a.required_per_arm, Some(31_235));
        assert!(a.srm_pvalue.unwrap() > 0.5);
        assert_eq!(a.verdict, Verdict::Collecting);
        // No SRM check for adaptive allocation, no requirement without a control rate.
        let b = analyze(&[ArmInput::default(), ArmInput::default()], None, 0.1, &cfg);
        assert_eq!((b.srm_pvalue, b.required_per_arm), (None, None));
        assert_eq!(b.arms[0].rate, None);
        assert!((b.arms[1].chance_to_beat_control.unwrap() - 0.5).abs() < 1e-9);
    }
}
