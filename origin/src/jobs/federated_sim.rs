//! `origin federated-sim`: DP-FedAvg on the demo listeners as clients, against the same model
//! trained centrally on everyone's plays. Each synthetic listener (the `demo-data` generator,
//! same seed, same people) keeps four plays in five to train on and one to test; the two
//! models are scored by AUC on the pooled held-out plays, and the accountant reports ε.

use domain::federated::{self, Accountant, RoundOutcome, RoundPolicy, DIM};
use domain::personalization::feature_vector;
use domain::time::UnixMillis;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::catalogue;

/// The simulation's settings.
#[derive(Debug, Clone, Copy)]
pub struct Simulation {
    pub seed: u64,
    pub clients: usize,
    pub rounds: u64,
    /// q: each client takes part in a round with this probability.
    pub sampling: f64,
    pub policy: RoundPolicy,
    pub delta: f64,
}

pub const DEFAULT: Simulation = Simulation {
    seed: 7,
    clients: 500,
    rounds: 200,
    sampling: 0.1,
    policy: RoundPolicy { min_clients: 5, clip: 0.5, noise_multiplier: 1.5 },
    delta: 1e-5,
};

/// The federated model's AUC is within this of the central one's.
pub const MARGIN: f64 = 0.05;

type Samples = Vec<([f64; 5], bool)>;

pub fn run(sim: &Simulation) -> Value {
    let tracks = catalogue::catalogue(sim.seed);
    let mut rng = StdRng::seed_from_u64(sim.seed);
    let mut clients: Vec<Samples> = Vec::with_capacity(sim.clients);
    let mut test: Samples = Vec::new();
    for _ in 0..sim.clients {
        let who = catalogue::listener(&mut rng);
        let plays =
            catalogue::plays(&mut rng, &who, &tracks, 100, UnixMillis(0), UnixMillis(86_400_000 * 30));
        let mut own = Vec::new();
        for (i, (_, p)) in plays.iter().enumerate() {
            let Some(f) = p.features else { continue };
            let row = (feature_vector(&f), !p.skipped());
            if i % 5 == 4 {
                test.push(row);
            } else {
                own.push(row);
            }
        }
        clients.push(own);
    }
    let pooled: Samples = clients.iter().flatten().copied().collect();
    let central = domain::analytics::train_churn(&pooled, 400, 1.0);
    let central_model: Vec<f64> = central.weights.iter().copied().chain([central.bias]).collect();
    let auc = |model: &[f64]| {
        let scored: Vec<(f64, bool)> = test.iter().map(|(x, y)| (federated::logit(model, x), *y)).collect();
        domain::analytics::auc(&scored)
    };
    let mut global = vec![0.0; DIM];
    let mut accountant = Accountant::default();
    let mut aggregated = 0u64;
    let mut curve = Vec::new();
    for round in 1..=sim.rounds {
        let updates: Vec<Vec<f64>> = clients
            .iter()
            .filter(|_| rng.gen_bool(sim.sampling))
            .map(|own| federated::local_update(&global, own, 5, 1.0))
            .collect();
        let noise: Vec<f64> =
            (0..DIM).map(|_| federated::standard_normal(1.0 - rng.gen::<f64>(), rng.gen::<f64>())).collect();
        // Every round spends privacy whether or not it aggregates: the clients were sampled.
        accountant.compose(sim.sampling, sim.policy.noise_multiplier, 1);
        if let RoundOutcome::Aggregated { delta, .. } = federated::aggregate(&updates, &sim.policy, &noise) {
            for (w, d) in global.iter_mut().zip(delta) {
                *w += d;
            }
            aggregated += 1;
        }
        if round % (sim.rounds / 10).max(1) == 0 {
            curve.push(json!({ "round": round, "auc": round3(auc(&global)) }));
        }
    }
    let (epsilon, order) = accountant.epsilon(sim.delta);
    let (fed_auc, central_auc) = (auc(&global), auc(&central_model));
    json!({
        "clients": sim.clients,
        "rounds": sim.rounds,
        "rounds_aggregated": aggregated,
        "sampling_rate": sim.sampling,
        "policy": sim.policy,
        "central_auc": round3(central_auc),
        "federated_auc": round3(fed_auc),
        "margin": MARGIN,
        "converged": central_auc - fed_auc <= MARGIN,
        "epsilon": round3(epsilon),
        "delta": sim.delta,
        "rdp_order": order,
        "held_out_plays": test.len(),
        "auc_by_round": curve,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_federated_model_converges_to_within_the_margin_of_the_central_one() {
        let summary = run(&Simulation { clients: 200, rounds: 100, ..DEFAULT });
        assert_eq!(summary["converged"], true, "{summary}");
        assert!(summary["central_auc"].as_f64().unwrap() > 0.65, "{summary}");
        let eps = summary["epsilon"].as_f64().unwrap();
        assert!(eps > 0.0 && eps < 20.0, "{summary}");
    }
}
