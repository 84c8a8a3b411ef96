//! One evaluation of any pair set: one network or an ensemble, on the pairs as they are or
//! over test-time views, in evaluation mode.

use dfdx::prelude::*;

use super::augment::{Affine, Side};
use super::loss::gather;
use super::norm::Normalization;
use super::predict::{predict, predict_averaged, probabilities};
use crate::compile::{DigitLogits, Input, Network, Outputs};
use crate::data::Samples;
use crate::error::Result;
use crate::ops::Act;
use crate::variants::EVAL_CHUNK;

/// The errors of one evaluation, as fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Errors {
    /// Samples whose target is predicted wrong (a pair's relation, an image's class).
    pub pair: f64,
    /// Digits whose class is wrong, where the network has digit outputs.
    pub digit: Option<f64>,
}

/// Test-time augmentation: each sample seen as it is and shifted by `shift` pixels left,
/// right, up and down, in raw pixels (`norm` undone, then redone).
#[derive(Debug, Clone)]
pub struct Views {
    affines: Vec<Affine>,
    norm: Normalization,
    side: Side,
}

impl Views {
    /// The five views of images of `side`.
    pub fn shifts(shift: f32, norm: Normalization, side: Side) -> Views {
        let s = f64::from(shift);
        let affines = [(0.0, 0.0), (s, 0.0), (-s, 0.0), (0.0, s), (0.0, -s)]
            .into_iter()
            .map(|(dx, dy)| Affine {
                dx,
                dy,
                degrees: 0.0,
                scale: 1.0,
            })
            .collect();
        Views {
            affines,
            norm,
            side,
        }
    }

    /// `set` seen through every view.
    fn of(&self, set: &Samples) -> Vec<Samples> {
        let norm = self.norm;
        let view = |v: &Affine| {
            let mut input = Vec::with_capacity(set.input.len());
            for image in set.input.chunks_exact(set.pixels) {
                let raw: Vec<f32> = image.iter().map(|&x| norm.to_raw(x)).collect();
                let moved = v.apply(&raw, self.side);
                input.extend(moved.into_iter().map(|x| norm.to_network(x)));
            }
            Samples {
                input,
                ..set.clone()
            }
        };
        self.affines.iter().map(view).collect()
    }
}

/// What an evaluation predicted for each sample, beside its errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// Each sample's predicted target.
    pub predicted: Vec<u16>,
    /// The probability the outputs gave that prediction.
    pub confidence: Vec<f64>,
    /// Each image's predicted class, where the network has class outputs of its images.
    pub digits: Option<Vec<usize>>,
}

/// The errors of `nets` on `set` (through `views`, when given): one network predicts from
/// its logits, several outputs from their averaged probabilities. `None` when any output is
/// NaN or infinite (the round diverged, whatever the argmax would say).
pub fn evaluate(nets: &[&Network], set: &Samples, views: Option<&Views>) -> Result<Option<Errors>> {
    Ok(measure(nets, set, views, false)?.map(|(e, _)| e))
}

/// [`evaluate`], with what was predicted for each sample.
pub fn evaluate_detailed(
    nets: &[&Network],
    set: &Samples,
    views: Option<&Views>,
) -> Result<Option<(Errors, Detail)>> {
    measure(nets, set, views, true)
}

/// The evaluation; with `detail`, each sample's prediction and its probability too.
fn measure(
    nets: &[&Network],
    set: &Samples,
    views: Option<&Views>,
    detail: bool,
) -> Result<Option<(Errors, Detail)>> {
    let viewed = views.map(|v| v.of(set));
    let sets: Vec<&Samples> = match &viewed {
        Some(v) => v.iter().collect(),
        None => vec![set],
    };
    let (compare, task) = (nets[0].compare, nets[0].plan.data.task);
    let idx: Vec<usize> = (0..set.len()).collect();
    let (mut wrong, mut digit_wrong) = (0usize, 0usize);
    let mut d = Detail {
        predicted: Vec::new(),
        confidence: Vec::new(),
        digits: None,
    };
    for chunk in idx.chunks(EVAL_CHUNK) {
        let batches: Vec<_> = sets.iter().map(|s| gather(task, s, chunk)).collect();
        let mut outs: Vec<Outputs<NoneTape>> = Vec::with_capacity(nets.len() * sets.len());
        for net in nets {
            for b in &batches {
                let input = Input {
                    samples: &b.samples,
                    batch: chunk.len(),
                };
                let out = net.forward(input, false)?;
                if !finite_outputs(&out) {
                    return Ok(None);
                }
                outs.push(out);
            }
        }
        let p = match outs.as_slice() {
            [one] => predict(one, compare, task),
            many => predict_averaged(many, chunk.len(), compare, task),
        };
        let b = &batches[0];
        wrong += p.wrong(&b.target);
        if detail {
            let probs = probabilities(&outs, chunk.len(), task);
            d.confidence
                .extend(p.target.iter().zip(probs).map(|(&t, q)| q[usize::from(t)]));
            d.predicted.extend(&p.target);
        }
        if let Some(digits) = p.digits {
            let classes = b.classes.iter().map(|&c| usize::from(c));
            digit_wrong += digits.iter().zip(classes).filter(|&(&p, c)| p != c).count();
            d.digits.get_or_insert_with(Vec::new).extend(digits);
        }
    }
    let n = set.len().max(1) as f64;
    let errors = Errors {
        pair: wrong as f64 / n,
        digit: d.digits.is_some().then(|| digit_wrong as f64 / (2.0 * n)),
    };
    Ok(Some((errors, d)))
}

/// Whether every value of `out` is finite.
fn finite_outputs(out: &Outputs<NoneTape>) -> bool {
    let finite = |t: &Act<NoneTape>| t.as_vec().iter().all(|v| v.is_finite());
    out.compare.iter().chain(&out.reversed).all(finite)
        && match &out.digits {
            None => true,
            Some(DigitLogits::Interleaved(d)) => finite(d),
            Some(DigitLogits::Split(d0, d1)) => finite(d0) && finite(d1),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::DataShape;
    use crate::data::{Dataset, draw};
    use crate::spec::Task;
    use crate::train::predict::softmax;

    const SHAPE: DataShape = DataShape {
        task: Task::SEED,
        side: (14, 14),
        classes: 10,
    };

    fn network(spec_text: &str, seed: u64) -> Network {
        // A file per call: tests run at once, and one must not read another's half-written.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lesser-ens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("e{n}.toml"));
        std::fs::write(&path, spec_text).unwrap();
        let spec = crate::spec::load(&path).unwrap().unwrap();
        Network::new(&spec, SHAPE, seed).unwrap()
    }

    const LEARNED: &str = r#"
[model]
weight_sharing = true
aux_loss = 1.0
digit = [{ layer = "flatten" }, { layer = "linear", out = 10 }]
head = [{ layer = "linear", in = 20, out = 2 }]
"#;

    fn pairs() -> Samples {
        let data = Dataset::load(std::path::Path::new("data/mnist"), 2).unwrap();
        draw(&data.train, &data.test, Task::SEED, (60, 60), 2)
            .unwrap()
            .0
    }

    /// An ensemble averages its members' probabilities: two copies of one network predict as
    /// it does, and two networks predict as their averaged softmax says, pair by pair.
    #[test]
    fn ensembles_average_probabilities() {
        let set = pairs();
        let (a, b) = (network(LEARNED, 1), network(LEARNED, 2));
        let alone = evaluate(&[&a], &set, None).unwrap().unwrap();
        assert_eq!(evaluate(&[&a, &a], &set, None).unwrap().unwrap(), alone);
        // By hand: each member's comparison softmax, averaged.
        let all: Vec<usize> = (0..set.len()).collect();
        let batch = gather(Task::SEED, &set, &all);
        let probs = |net: &Network| {
            let input = Input {
                samples: &batch.samples,
                batch: set.len(),
            };
            let out: Outputs<NoneTape> = net.forward(input, false).unwrap();
            softmax(&out.compare.unwrap().as_vec(), 2)
        };
        let (pa, pb) = (probs(&a), probs(&b));
        let wrong = (0..set.len())
            .filter(|&i| u16::from(pa[i][1] + pb[i][1] > pa[i][0] + pb[i][0]) != set.target[i])
            .count();
        let got = evaluate(&[&a, &b], &set, None).unwrap().unwrap();
        assert_eq!(got.pair, wrong as f64 / set.len() as f64);
        assert_ne!(evaluate(&[&b], &set, None).unwrap().unwrap(), alone);
    }

    /// Test-time augmentation averages five views: the pairs as they are and four one-pixel
    /// shifts; the identity view alone measures what plain evaluation does.
    #[test]
    fn test_time_augmentation_averages_shifted_views() {
        let raw = Normalization::fit(crate::spec::Normalize::None, &[]);
        let views = Views::shifts(1.0, raw, (14, 14));
        let shifts: Vec<(f64, f64)> = views.affines.iter().map(|v| (v.dx, v.dy)).collect();
        assert_eq!(
            shifts,
            [(0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)]
        );
        let set = pairs();
        let a = network(LEARNED, 1);
        let alone = evaluate(&[&a], &set, None).unwrap().unwrap();
        let identity = Views {
            affines: views.affines[..1].to_vec(),
            norm: raw,
            side: (14, 14),
        };
        let got = evaluate(&[&a], &set, Some(&identity)).unwrap().unwrap();
        assert_eq!(got, alone);
        // Five views: by hand, the shifted sets' softmax averaged with the plain one's.
        let by_hand = {
            let all: Vec<usize> = (0..set.len()).collect();
            let mut p = vec![[0.0f64; 2]; set.len()];
            for v in &views.affines {
                let input: Vec<f32> = set
                    .input
                    .chunks_exact(196)
                    .flat_map(|d| v.apply(d, (14, 14)))
                    .collect();
                let shifted = Samples {
                    input,
                    ..set.clone()
                };
                let b = gather(Task::SEED, &shifted, &all);
                let input = Input {
                    samples: &b.samples,
                    batch: set.len(),
                };
                let out: Outputs<NoneTape> = a.forward(input, false).unwrap();
                for (acc, q) in p.iter_mut().zip(softmax(&out.compare.unwrap().as_vec(), 2)) {
                    acc[0] += q[0];
                    acc[1] += q[1];
                }
            }
            let wrong = (0..set.len())
                .filter(|&i| u16::from(p[i][1] > p[i][0]) != set.target[i])
                .count();
            wrong as f64 / set.len() as f64
        };
        let got = evaluate(&[&a], &set, Some(&views)).unwrap().unwrap();
        assert_eq!(got.pair, by_hand);
    }
}
