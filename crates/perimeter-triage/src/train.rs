//! Deterministic training: multinomial logistic regression by stochastic gradient descent with
//! L2 regularisation, examples shuffled by a seeded generator. The same examples in the same
//! order with the same [`TrainConfig`] give the same model, bit for bit.

use perimeter_workflows::Intent;

use crate::features::{Features, featurize};
use crate::model::{Model, softmax};

/// One labelled message.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The message text.
    pub text: String,
    /// Its intent.
    pub intent: Intent,
    /// How much it counts in training (1.0 normally).
    pub weight: f32,
}

impl Example {
    /// An example of weight 1.
    pub fn new(text: impl Into<String>, intent: Intent) -> Example {
        Example {
            text: text.into(),
            intent,
            weight: 1.0,
        }
    }
}

/// Training settings. The defaults are the ones the shipped model was trained with.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Feature hash size: `1 << hash_bits` buckets (8..=20).
    pub hash_bits: u8,
    /// Passes over the data.
    pub epochs: usize,
    /// Initial learning rate.
    pub learning_rate: f32,
    /// Learning-rate decay per epoch: `lr / (1 + decay * epoch)`.
    pub decay: f32,
    /// L2 penalty on the weights a step touches.
    pub l2: f32,
    /// Buckets seen in fewer messages than this get no weight (keeps names and other rare
    /// strings from becoming features).
    pub min_df: usize,
    /// Extra weight of emergency examples (a missed emergency costs more than a false alarm).
    pub emergency_weight: f32,
    /// Weight of the hand-written extra examples (see [`crate::training_examples`]).
    pub extra_weight: f32,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hash_bits: 15,
            epochs: 20,
            learning_rate: 0.5,
            decay: 0.2,
            l2: 1e-4,
            min_df: 3,
            emergency_weight: 1.0,
            extra_weight: 2.0,
            seed: 0x7269_6167_6521,
        }
    }
}

/// Why training could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrainError {
    /// No examples.
    #[error("no training examples")]
    Empty,
    /// A setting is out of range.
    #[error("training setting {field} is invalid: {expected}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

/// Trains a model over every intent in [`Intent::ALL`].
pub fn train(examples: &[Example], config: &TrainConfig) -> Result<Model, TrainError> {
    if examples.is_empty() {
        return Err(TrainError::Empty);
    }
    if !(8..=20).contains(&config.hash_bits) {
        return Err(TrainError::Config {
            field: "hash_bits",
            expected: "between 8 and 20",
        });
    }
    if !(config.learning_rate.is_finite() && config.learning_rate > 0.0) {
        return Err(TrainError::Config {
            field: "learning_rate",
            expected: "a positive number",
        });
    }
    if !(config.l2.is_finite()
        && config.l2 >= 0.0
        && config.decay.is_finite()
        && config.decay >= 0.0)
    {
        return Err(TrainError::Config {
            field: "l2/decay",
            expected: "non-negative numbers",
        });
    }
    let classes: Vec<Intent> = Intent::ALL.to_vec();
    let k = classes.len();
    let buckets = 1usize << config.hash_bits;

    let mut data: Vec<(Features, usize, f32)> = examples
        .iter()
        .map(|e| {
            let class = classes.iter().position(|c| *c == e.intent).unwrap_or(0);
            let mut w = if e.weight.is_finite() && e.weight > 0.0 {
                e.weight
            } else {
                0.0
            };
            if e.intent == Intent::Emergency {
                w *= config.emergency_weight;
            }
            (featurize(&e.text, config.hash_bits), class, w)
        })
        .collect();

    // Document frequency per bucket; rare buckets are dropped from every example.
    let mut df = vec![0u32; buckets];
    for (f, _, _) in &data {
        for (b, _) in f {
            if let Some(d) = df.get_mut(*b as usize) {
                *d += 1;
            }
        }
    }
    let min_df = config.min_df as u32;
    for (f, _, _) in &mut data {
        f.retain(|(b, _)| df.get(*b as usize).is_some_and(|d| *d >= min_df));
    }

    let mut weights = vec![0.0f32; buckets * k];
    let mut bias = vec![0.0f32; k];
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = SplitMix64(config.seed);
    let mut p = vec![0.0f32; k];
    for epoch in 0..config.epochs {
        shuffle(&mut order, &mut rng);
        let lr = config.learning_rate / (1.0 + config.decay * epoch as f32);
        for &i in &order {
            let Some((f, y, w)) = data.get(i) else {
                continue;
            };
            if *w == 0.0 {
                continue;
            }
            p.copy_from_slice(&bias);
            for &(b, v) in f {
                let row = &weights[b as usize * k..b as usize * k + k];
                for (pc, wc) in p.iter_mut().zip(row) {
                    *pc += wc * v;
                }
            }
            softmax(&mut p);
            for c in 0..k {
                let target = if c == *y { 1.0 } else { 0.0 };
                let g = w * (p[c] - target);
                bias[c] -= lr * g;
                for &(b, v) in f {
                    let wt = &mut weights[b as usize * k + c];
                    *wt -= lr * (g * v + config.l2 * *wt);
                }
            }
        }
    }
    Ok(Model::from_float(config.hash_bits, classes, bias, &weights))
}

/// Fisher-Yates with a fixed generator: the same seed, the same order on every platform.
fn shuffle(v: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and fully specified, so shuffles are
/// reproducible without depending on a crate's generator staying the same across versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Vec<Example> {
        let mut v = Vec::new();
        for i in 0..6 {
            v.push(Example::new(
                format!("i need a refill of my pills please {i}"),
                Intent::Refill,
            ));
            v.push(Example::new(
                format!("can i book an appointment next week {i}"),
                Intent::Scheduling,
            ));
            v.push(Example::new(
                format!("question about my bill and payment {i}"),
                Intent::Billing,
            ));
        }
        v
    }

    #[test]
    fn learns_a_toy_problem() {
        let cfg = TrainConfig {
            hash_bits: 12,
            min_df: 1,
            ..TrainConfig::default()
        };
        let m = train(&toy(), &cfg).unwrap();
        let f = featurize("refill my pills", 12);
        let p = m.probabilities(&f);
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(m.classes()[best], Intent::Refill);
    }

    #[test]
    fn training_is_deterministic() {
        let cfg = TrainConfig {
            hash_bits: 10,
            min_df: 1,
            ..TrainConfig::default()
        };
        let a = train(&toy(), &cfg).unwrap().to_bytes();
        let b = train(&toy(), &cfg).unwrap().to_bytes();
        assert_eq!(a, b);
        let other = TrainConfig { seed: 1, ..cfg };
        assert_ne!(a, train(&toy(), &other).unwrap().to_bytes());
    }

    #[test]
    fn refuses_bad_settings() {
        assert_eq!(
            train(&[], &TrainConfig::default()).unwrap_err(),
            TrainError::Empty
        );
        let cfg = TrainConfig {
            hash_bits: 30,
            ..TrainConfig::default()
        };
        assert!(matches!(
            train(&toy(), &cfg),
            Err(TrainError::Config {
                field: "hash_bits",
                ..
            })
        ));
        let cfg = TrainConfig {
            learning_rate: f32::NAN,
            ..TrainConfig::default()
        };
        assert!(train(&toy(), &cfg).is_err());
    }

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 (reference implementation).
        let mut r = SplitMix64(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
    }
}
