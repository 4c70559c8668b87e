//! Random draws used by the simulation (all from the symbol's own seeded generator).

use rand::rngs::SmallRng;
use rand::Rng;

/// Approximately standard normal (sum of three uniforms, scaled to unit variance).
#[inline]
pub(super) fn normal(rng: &mut SmallRng) -> f64 {
    let s: f64 = rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>();
    (s - 1.5) * 2.0
}

/// Exponential with the given mean.
#[inline]
pub(super) fn exponential(rng: &mut SmallRng, mean: f64) -> f64 {
    -(1.0 - rng.random::<f64>()).ln() * mean
}

/// Log-uniform between `ln_lo` and `ln_hi` (given as natural logarithms).
#[inline]
pub(super) fn log_uniform(rng: &mut SmallRng, ln_lo: f64, ln_hi: f64) -> f64 {
    (ln_lo + rng.random::<f64>() * (ln_hi - ln_lo)).exp()
}

/// Uniform in `[lo, hi)`.
#[inline]
pub(super) fn uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> f64 {
    lo + rng.random::<f64>() * (hi - lo)
}
