//! How pixels are scaled before the network, as one type: fitted on a round's training
//! pairs, applied to every set the round feeds its networks, undone where raw pixels are
//! needed (test-time shifts).

use crate::spec::Normalize;

/// `v -> (v - shift) * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    shift: f32,
    scale: f32,
}

impl Normalization {
    /// The normalization `kind` asks for, its statistics taken from `train` (raw pixels).
    pub fn fit(kind: Normalize, train: &[f32]) -> Normalization {
        let (shift, scale) = match kind {
            Normalize::None => (0.0, 1.0),
            Normalize::Scale => (0.0, 1.0 / 255.0),
            Normalize::Standardize => {
                let n = train.len() as f64;
                let mean = train.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                let var = train
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / n;
                (mean as f32, 1.0 / (var.sqrt().max(1e-12) as f32))
            }
        };
        Normalization { shift, scale }
    }

    /// Normalizes raw pixels in place.
    pub fn apply(&self, values: &mut [f32]) {
        for v in values {
            *v = self.to_network(*v);
        }
    }

    /// One raw pixel as the network sees it.
    pub fn to_network(&self, raw: f32) -> f32 {
        (raw - self.shift) * self.scale
    }

    /// One normalized pixel back in raw units.
    pub fn to_raw(&self, v: f32) -> f32 {
        v / self.scale + self.shift
    }
}
