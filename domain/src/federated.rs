//! Federated learning with differential privacy: DP-FedAvg (McMahan et al. 2018) for the shared
//! skip predictor, and the Rényi-DP accountant of the sampled Gaussian mechanism (Mironov,
//! Talwar & Zhang 2019) that turns the rounds into (ε, δ). Noise comes in as standard normal
//! draws, so every function here is deterministic.
//!
//! - clip: `Δ ← Δ·min(1, C/‖Δ‖₂)`;
//! - aggregate (only with at least K clients): `Δ̄ = (Σ clip(Δᵢ) + N(0, σ²C²·I)) / n`;
//! - RDP of one round at integer order α, sampling rate q:
//!   `ε(α) = ln Σₖ C(α,k)(1−q)^(α−k) qᵏ exp((k²−k)/(2σ²)) / (α−1)`, summed over rounds;
//! - (ε, δ): `ε = minₐ RDP(α) + ln(1/δ)/(α−1)`.

use serde::{Deserialize, Serialize};

/// The shared model's parameters: five audio-feature weights and the bias.
pub const DIM: usize = 6;

/// A round's rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoundPolicy {
    /// K: a round aggregates only with at least this many clients.
    pub min_clients: usize,
    /// C: the L2 bound every update is clipped to.
    pub clip: f64,
    /// σ: the noise's standard deviation is σ·C.
    pub noise_multiplier: f64,
}

pub const DEFAULT_POLICY: RoundPolicy = RoundPolicy { min_clients: 5, clip: 1.0, noise_multiplier: 1.0 };

pub fn l2_norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Scales `delta` down to L2 norm `bound` when it is longer.
pub fn clip(delta: &[f64], bound: f64) -> Vec<f64> {
    let norm = l2_norm(delta);
    let scale = if norm > bound && norm > 0.0 { bound / norm } else { 1.0 };
    delta.iter().map(|x| x * scale).collect()
}

/// A standard normal draw from two uniform draws in (0, 1] (Box–Muller).
pub fn standard_normal(u1: f64, u2: f64) -> f64 {
    let u1 = u1.clamp(f64::MIN_POSITIVE, 1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// What closing a round gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RoundOutcome {
    /// Fewer than K clients: nothing is aggregated (and their updates are discarded).
    TooFewClients {
        clients: usize,
        needed: usize,
    },
    Aggregated {
        delta: Vec<f64>,
        clients: usize,
    },
}

/// DP-FedAvg's server step: each update clipped to C, summed, Gaussian noise of standard
/// deviation σ·C added per coordinate (`noise`: standard normal draws, one per coordinate),
/// divided by the number of clients. Updates of another length than the first are invalid and
/// must be refused before (`valid_update`).
pub fn aggregate(updates: &[Vec<f64>], policy: &RoundPolicy, noise: &[f64]) -> RoundOutcome {
    if updates.len() < policy.min_clients || updates.is_empty() {
        return RoundOutcome::TooFewClients { clients: updates.len(), needed: policy.min_clients };
    }
    let mut sum = [0.0; DIM];
    for u in updates {
        for (s, x) in sum.iter_mut().zip(clip(u, policy.clip)) {
            *s += x;
        }
    }
    let n = updates.len() as f64;
    let delta = sum
        .iter()
        .zip(noise.iter().chain(std::iter::repeat(&0.0)))
        .map(|(s, z)| (s + policy.noise_multiplier * policy.clip * z) / n)
        .collect();
    RoundOutcome::Aggregated { delta, clients: updates.len() }
}

/// Whether an update has the model's shape and finite values.
pub fn valid_update(delta: &[f64]) -> bool {
    delta.len() == DIM && delta.iter().all(|x| x.is_finite())
}

/// The shared model's logit for features `x` (weights then bias).
pub fn logit(model: &[f64], x: &[f64; 5]) -> f64 {
    let bias = model.get(5).copied().unwrap_or(0.0);
    bias + model.iter().zip(x).map(|(w, xi)| w * xi).sum::<f64>()
}

/// A client's step: `epochs` of full-batch gradient descent on its own `(features, played in
/// full)` samples from the global model; answers the weight delta it sends (never the data).
pub fn local_update(global: &[f64], samples: &[([f64; 5], bool)], epochs: usize, rate: f64) -> Vec<f64> {
    let mut w: Vec<f64> = global.iter().copied().chain(std::iter::repeat(0.0)).take(DIM).collect();
    let n = samples.len().max(1) as f64;
    for _ in 0..epochs {
        let mut g = vec![0.0; DIM];
        for (x, y) in samples {
            let err = 1.0 / (1.0 + (-logit(&w, x)).exp()) - if *y { 1.0 } else { 0.0 };
            for (gi, xi) in g.iter_mut().zip(x.iter().chain(std::iter::once(&1.0))) {
                *gi += err * xi;
            }
        }
        for (wi, gi) in w.iter_mut().zip(g) {
            *wi -= rate * gi / n;
        }
    }
    w.iter().zip(global.iter().chain(std::iter::repeat(&0.0))).map(|(a, b)| a - b).collect()
}

/// The Rényi orders the accountant tracks.
pub const ORDERS: std::ops::RangeInclusive<u32> = 2..=64;

fn ln_binomial(n: u32, k: u32) -> f64 {
    (1..=k).map(|i| (f64::from(n - k + i)).ln() - f64::from(i).ln()).sum()
}

/// The RDP at integer order α ≥ 2 of one sampled Gaussian mechanism (sampling rate q, noise
/// multiplier σ), computed in log space.
pub fn rdp_sampled_gaussian(q: f64, sigma: f64, alpha: u32) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return f64::from(alpha) / (2.0 * sigma * sigma);
    }
    let terms: Vec<f64> = (0..=alpha)
        .map(|k| {
            let kf = f64::from(k);
            ln_binomial(alpha, k)
                + f64::from(alpha - k) * (1.0 - q).ln()
                + kf * q.ln()
                + (kf * kf - kf) / (2.0 * sigma * sigma)
        })
        .collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ln_a = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
    ln_a / f64::from(alpha - 1)
}

/// The privacy spent so far: the RDP of every round, per order in [`ORDERS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accountant {
    pub rdp: Vec<f64>,
    pub rounds: u64,
}

impl Default for Accountant {
    fn default() -> Self {
        Self { rdp: ORDERS.map(|_| 0.0).collect(), rounds: 0 }
    }
}

impl Accountant {
    /// Adds `steps` rounds at sampling rate q and noise multiplier σ.
    pub fn compose(&mut self, q: f64, sigma: f64, steps: u64) {
        for (r, alpha) in self.rdp.iter_mut().zip(ORDERS) {
            *r += steps as f64 * rdp_sampled_gaussian(q, sigma, alpha);
        }
        self.rounds += steps;
    }

    /// (ε, the optimal order) for δ: `minₐ RDP(α) + ln(1/δ)/(α−1)`.
    pub fn epsilon(&self, delta: f64) -> (f64, u32) {
        self.rdp
            .iter()
            .zip(ORDERS)
            .map(|(r, alpha)| (r + (1.0 / delta).ln() / f64::from(alpha - 1), alpha))
            .fold((f64::INFINITY, 0), |best, e| if e.0 < best.0 { e } else { best })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_bounds_the_l2_norm_and_keeps_short_updates() {
        let clipped = clip(&[3.0, 4.0], 1.0);
        assert!((clipped[0] - 0.6).abs() < 1e-12 && (clipped[1] - 0.8).abs() < 1e-12, "{clipped:?}");
        assert_eq!(clip(&[0.3, 0.4], 1.0), vec![0.3, 0.4]);
        assert_eq!(clip(&[0.0, 0.0], 1.0), vec![0.0, 0.0]);
        assert!((l2_norm(&clip(&[10.0, -10.0, 5.0], 2.5)) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn a_round_with_too_few_clients_does_not_aggregate() {
        let policy = RoundPolicy { min_clients: 3, clip: 1.0, noise_multiplier: 1.0 };
        let two = vec![vec![0.1; DIM], vec![0.2; DIM]];
        assert_eq!(
            aggregate(&two, &policy, &[0.0; DIM]),
            RoundOutcome::TooFewClients { clients: 2, needed: 3 }
        );
    }

    #[test]
    fn the_noise_has_standard_deviation_sigma_times_the_clip_over_n() {
        let policy = RoundPolicy { min_clients: 2, clip: 0.5, noise_multiplier: 2.0 };
        // One update long enough to clip, one short; noise 1 on the first coordinate only.
        let updates = vec![vec![3.0, 4.0, 0.0, 0.0, 0.0, 0.0], vec![0.1, 0.0, 0.0, 0.0, 0.0, 0.0]];
        let RoundOutcome::Aggregated { delta, clients } =
            aggregate(&updates, &policy, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        else {
            unreachable!("two clients meet the minimum")
        };
        assert_eq!(clients, 2);
        // (0.3 + 0.1 + 2.0·0.5·1) / 2 and (0.4) / 2
        assert!((delta[0] - 0.7).abs() < 1e-12 && (delta[1] - 0.2).abs() < 1e-12);
        // Box–Muller: u1 = e^(-1/2), u2 = 0 gives exactly 1.
        assert!((standard_normal((-0.5f64).exp(), 0.0) - 1.0).abs() < 1e-12);
        // Many draws have mean 0 and variance 1.
        let n = 200;
        let draws: Vec<f64> = (0..n * n)
            .map(|i| {
                standard_normal(
                    (f64::from(i / n) + 0.5) / f64::from(n),
                    (f64::from(i % n) + 0.5) / f64::from(n),
                )
            })
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");
    }

    #[test]
    fn a_local_update_moves_towards_the_clients_data() {
        // Full plays have high energy: the energy weight grows, and the delta is what moved.
        let samples: Vec<([f64; 5], bool)> =
            (0..20).map(|i| ([f64::from(i % 2), 0.5, 0.5, 0.5, 0.5], i % 2 == 1)).collect();
        let delta = local_update(&[0.0; DIM], &samples, 10, 1.0);
        assert_eq!(delta.len(), DIM);
        assert!(delta[0] > 0.5, "{delta:?}");
        let again = local_update(&delta, &samples, 0, 1.0);
        assert_eq!(again, vec![0.0; DIM], "no epoch, no change");
        assert!(logit(&delta, &[1.0, 0.5, 0.5, 0.5, 0.5]) > logit(&delta, &[0.0, 0.5, 0.5, 0.5, 0.5]));
    }

    #[test]
    fn updates_of_the_wrong_shape_are_invalid() {
        assert!(valid_update(&[0.0; DIM]));
        assert!(!valid_update(&[0.0; 3]));
        assert!(!valid_update(&[f64::NAN, 0.0, 0.0, 0.0, 0.0, 0.0]));
    }

    #[test]
    fn the_accountant_matches_published_values() {
        // TensorFlow Privacy's rdp_accountant tests: compute_rdp(q=0.1, σ=2, steps=10, order 5).
        let mut a = Accountant::default();
        a.compose(0.1, 2.0, 10);
        assert!((a.rdp[3] - 0.07737).abs() < 5e-6, "{}", a.rdp[3]);
        // Abadi et al. 2016 (the moments accountant): q = 0.01, σ = 4, 10,000 steps, δ = 1e-5
        // gives ε ≈ 1.26 (TF Privacy's test: 1.258575 at order 20, orders 2–32).
        let mut b = Accountant::default();
        b.compose(0.01, 4.0, 10_000);
        let (eps, order) = b.epsilon(1e-5);
        assert!((eps - 1.258575).abs() < 1e-5, "{eps}");
        assert_eq!(order, 20);
        // Without sampling it is the Gaussian mechanism: RDP α/(2σ²) (Mironov 2017).
        assert!((rdp_sampled_gaussian(1.0, 2.0, 8) - 1.0).abs() < 1e-12);
        // Nothing spent, and more rounds spend more.
        assert!((Accountant::default().epsilon(1e-5).0 - (1e5f64).ln() / 63.0).abs() < 1e-12);
        let mut c = b.clone();
        c.compose(0.01, 4.0, 1_000);
        assert!(c.epsilon(1e-5).0 > eps);
    }
}
