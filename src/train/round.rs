//! One round: draw the pairs, build each network from its seed, train it epoch by epoch,
//! measure it. Which seed feeds what is in `seeds.rs`.

use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::augment::augment;
use super::eval::{Detail, Errors, Views, evaluate, evaluate_detailed};
use super::loss::{batch_loss, gather};
use super::norm::Normalization;
use super::optim::Optim;
use super::predict::predict;
use crate::breakdown::Breakdown;
use crate::compile::{Input, NetState, Network};
use crate::data::{Dataset, Samples, draw, repair};
use crate::error::Result;
use crate::ops::Param;
use crate::record::{EpochPoint, RoundResult, Status};
use crate::seeds;
use crate::spec::Spec;
use crate::variants::Variant;

/// The knobs of one round that do not come from the spec.
#[derive(Debug, Clone, Copy)]
pub struct RoundConfig {
    pub epochs: usize,
    pub data_seed: u64,
    pub init_seed: u64,
}

/// The round's sample sets, drawn and normalized once, shared by an ensemble's members.
struct Sets {
    /// The training samples as drawn, normalized: what the training error is measured on.
    train: Samples,
    /// The same, raw, when every epoch draws new pairs or augments (0 is no ink).
    raw: Option<Samples>,
    test: Samples,
    validation: Option<Samples>,
    norm: Normalization,
    /// The images' `(height, width)`.
    side: (usize, usize),
    classes: usize,
}

fn prepare(spec: &Spec, data: &Dataset, cfg: RoundConfig) -> Result<Sets> {
    let counts = (spec.data.train_pairs, spec.data.test_pairs);
    let (mut train, mut test) = draw(&data.train, &data.test, spec.task, counts, cfg.data_seed)?;
    let mut validation = hold_out(&mut train, spec.train.validation);
    let fresh = spec.train.augment.is_some() || spec.train.repair;
    let raw = fresh.then(|| train.clone());
    let norm = Normalization::fit(spec.data.normalize, &train.input);
    for set in [&mut train, &mut test]
        .into_iter()
        .chain(validation.as_mut())
    {
        norm.apply(&mut set.input);
    }
    Ok(Sets {
        train,
        raw,
        test,
        validation,
        norm,
        side: data.side,
        classes: data.classes,
    })
}

/// The last `share` of `set`'s samples, taken out of it (their images with them: a sample's
/// images are used by no other sample).
fn hold_out(set: &mut Samples, share: f32) -> Option<Samples> {
    if share == 0.0 {
        return None;
    }
    let n = ((set.len() as f64) * f64::from(share)).round() as usize;
    let keep = set.len() - n.clamp(1, set.len() - 1);
    Some(set.split_off(keep))
}

/// One trained network of a round (the round's, or one member of its ensemble).
struct Member {
    net: Network,
    curve: Vec<EpochPoint>,
    loss: f64,
    /// The errors of the weights kept on the test pairs, with each sample's prediction.
    test: (Errors, Detail),
    validation_error: Option<f64>,
}

/// How training a network ended.
enum Trained {
    Done(Member),
    /// The round's result: it diverged.
    Diverged(RoundResult),
}

/// A round that diverged in `epoch`, with the last loss seen and the epochs before.
fn diverged(epoch: usize, loss: f64, curve: Vec<EpochPoint>) -> RoundResult {
    RoundResult {
        final_train_loss: loss,
        train_error: None,
        test_error: None,
        digit_test_error: None,
        status: Status::Diverged { epoch },
        weights: None,
        curve,
        validation_error: None,
        breakdown: None,
    }
}

/// The first 8 bytes of the SHA-256 of every trainable parameter's bits (little-endian, in
/// the network's order), as 16 hex digits.
pub fn weights_hash(params: &[Param]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in params {
        for v in p.values() {
            h.update(v.to_bits().to_le_bytes());
        }
    }
    crate::hash::short(h)
}

/// Whether every parameter of the network is finite.
fn finite_params(params: &[Param]) -> bool {
    params
        .iter()
        .all(|p| p.values().iter().all(|v| v.is_finite()))
}

/// A network in training, with its optimizer and random streams.
struct Trainer<'a> {
    spec: &'a Spec,
    sets: &'a Sets,
    net: Network,
    optim: Optim,
    shuffle: ChaCha8Rng,
    draws: ChaCha8Rng,
    order: Vec<usize>,
    step: usize,
    total_steps: usize,
    per_epoch: usize,
}

/// The training figures of one epoch, or the loss that diverged.
enum Epoch {
    Trained { loss: f64, error: f64 },
    Diverged(f64),
}

impl<'a> Trainer<'a> {
    fn new(variant: &'a Variant, sets: &'a Sets, epochs: usize, seed: u64) -> Self {
        let spec = &variant.spec;
        let net = Network::from_plan(spec, variant.plan.clone(), seed);
        let optim = Optim::new(spec.train.optimizer.clone(), &net.params);
        let per_epoch = sets.train.len().div_ceil(spec.train.batch_size);
        Trainer {
            spec,
            sets,
            net,
            optim,
            shuffle: seeds::rng(seed, seeds::SHUFFLE),
            draws: seeds::rng(seed, seeds::DRAWS),
            order: (0..sets.train.len()).collect(),
            step: 0,
            total_steps: per_epoch * epochs,
            per_epoch,
        }
    }

    /// This epoch's training pairs: new pairs or augmented digits when the spec asks for
    /// them (drawn from the network's own stream), else the round's.
    fn epoch_pairs(&mut self) -> std::borrow::Cow<'a, Samples> {
        let t = &self.spec.train;
        let Some(raw) = &self.sets.raw else {
            return std::borrow::Cow::Borrowed(&self.sets.train);
        };
        let mut train = if t.repair {
            repair(raw, self.spec.task, &mut self.draws)
        } else {
            raw.clone()
        };
        if let Some(a) = &t.augment {
            train.input = augment(&train.input, self.sets.side, a, &mut self.draws);
        }
        self.sets.norm.apply(&mut train.input);
        std::borrow::Cow::Owned(train)
    }

    /// One pass over `train` in a fresh order, a step per batch.
    fn epoch(&mut self, train: &Samples) -> Result<Epoch> {
        let spec = self.spec;
        self.order.shuffle(&mut self.shuffle);
        let (mut sum, mut wrong) = (0.0f64, 0usize);
        for chunk in self.order.chunks(spec.train.batch_size) {
            let b = gather(spec.task, train, chunk);
            let input = Input {
                samples: &b.samples,
                batch: chunk.len(),
            };
            let out = self.net.forward(input, true)?;
            let p = predict(&out, spec.model.compare, spec.task);
            wrong += p.wrong(&b.target);
            let loss = batch_loss(spec, out, &b);
            let value = f64::from(loss.array());
            if !value.is_finite() {
                return Ok(Epoch::Diverged(value));
            }
            sum += value * chunk.len() as f64;
            let mut grads = loss.backward();
            let t = &spec.train;
            let factor = t
                .schedule
                .factor(self.step, self.total_steps, self.per_epoch);
            self.optim.step(&mut self.net.params, &mut grads, factor);
            self.step += 1;
        }
        let n = train.len() as f64;
        Ok(Epoch::Trained {
            loss: sum / n,
            error: wrong as f64 / n,
        })
    }

    /// The errors of the network now on `set`.
    fn errors(&self, set: &Samples) -> Result<Option<Errors>> {
        evaluate(&[&self.net], set, None)
    }
}

/// The best epoch so far on the validation pairs, for early stopping.
struct Best {
    error: f64,
    epoch: usize,
    state: NetState,
}

/// Trains one network from `seed` on `sets`. With `measured`, the test and validation
/// errors are measured for the curve after every `curve_every`-th epoch and the last;
/// without, only what early stopping needs (the validation error) and, at the end, the test
/// error (the curve then holds the training figures alone).
fn train_member(
    variant: &Variant,
    sets: &Sets,
    cfg: RoundConfig,
    seed: u64,
    measured: bool,
) -> Result<Trained> {
    let t = &variant.spec.train;
    let mut trainer = Trainer::new(variant, sets, cfg.epochs, seed);
    let mut curve: Vec<EpochPoint> = Vec::with_capacity(cfg.epochs);
    let (mut loss, mut last_test, mut best) = (f64::NAN, None, None::<Best>);
    for epoch in 1..=cfg.epochs {
        let train = trainer.epoch_pairs();
        let error = match trainer.epoch(&train)? {
            Epoch::Trained { loss: l, error } => {
                loss = l;
                error
            }
            Epoch::Diverged(l) => return Ok(Trained::Diverged(diverged(epoch, l, curve))),
        };
        if !finite_params(&trainer.net.params) {
            return Ok(Trained::Diverged(diverged(epoch, loss, curve)));
        }
        let last = epoch == cfg.epochs;
        let on_curve = measured && (epoch % t.curve_every == 0 || last);
        // The last epoch's test error is the round's, curve or not, measured with each
        // sample's prediction (for where the errors are).
        let test_now = if last {
            match evaluate_detailed(&[&trainer.net], &sets.test, None)? {
                Some((e, detail)) => {
                    last_test = Some((e, detail));
                    Some(e)
                }
                None => return Ok(Trained::Diverged(diverged(epoch, loss, curve))),
            }
        } else if on_curve {
            match trainer.errors(&sets.test)? {
                Some(e) => Some(e),
                None => return Ok(Trained::Diverged(diverged(epoch, loss, curve))),
            }
        } else {
            None
        };
        let validation_error = match &sets.validation {
            Some(v) if on_curve || t.early_stopping.is_some() => match trainer.errors(v)? {
                Some(e) => Some(e.pair),
                None => return Ok(Trained::Diverged(diverged(epoch, loss, curve))),
            },
            _ => None,
        };
        curve.push(EpochPoint {
            train_loss: loss,
            train_error: error,
            test_error: test_now.filter(|_| measured).map(|e| e.pair),
            validation_error,
        });
        if let (Some(stop), Some(e)) = (t.early_stopping, validation_error) {
            if best.as_ref().is_none_or(|b| e < b.error) {
                let state = trainer.net.state();
                best = Some(Best {
                    error: e,
                    epoch,
                    state,
                });
            } else if best
                .as_ref()
                .is_some_and(|b| epoch - b.epoch >= stop.patience)
            {
                break;
            }
        }
    }
    finish_member(trainer.net, sets, curve, loss, last_test, best, cfg.epochs)
}

/// The member as trained, or back at its best epoch's weights when early stopping kept an
/// earlier one; measured on the test pairs unless the last epoch already was (`last_test`).
fn finish_member(
    mut net: Network,
    sets: &Sets,
    curve: Vec<EpochPoint>,
    loss: f64,
    mut last_test: Option<(Errors, Detail)>,
    best: Option<Best>,
    epochs: usize,
) -> Result<Trained> {
    let mut validation_error = curve.last().and_then(|p| p.validation_error);
    if let Some(b) = best.filter(|b| b.epoch != curve.len()) {
        net.set_state(&b.state);
        validation_error = Some(b.error);
        last_test = evaluate_detailed(&[&net], &sets.test, None)?;
    } else if last_test.is_none() && !curve.is_empty() {
        // Stopped early at its best epoch, before the last.
        last_test = evaluate_detailed(&[&net], &sets.test, None)?;
    }
    // The weights kept must still give finite outputs on the test pairs.
    let Some(test) = last_test else {
        return Ok(Trained::Diverged(diverged(epochs, loss, curve)));
    };
    Ok(Trained::Done(Member {
        net,
        curve,
        loss,
        test,
        validation_error,
    }))
}

/// Trains `variant` for one round on `data` and measures it. The round is recorded as
/// diverged in the epoch where its loss, a parameter (checked after every epoch) or an output
/// became NaN or infinite: a network can hide NaN weights behind a finite loss.
///
/// With a validation share, the last share of the training pairs is held out (before the
/// normalization's statistics are taken) and measured after every epoch; with early
/// stopping, training stops once it has not improved for `patience` epochs, and the round is
/// measured with the best epoch's weights. An ensemble trains its members one after another,
/// each from its own seed, and is measured on their averaged probabilities; its curve is the
/// first member's (the others are not measured after every epoch, which saves a fifth of
/// their time).
pub fn train_round(variant: &Variant, data: &Dataset, cfg: RoundConfig) -> Result<Round> {
    let spec = &variant.spec;
    let sets = prepare(spec, data, cfg)?;
    let mut members = Vec::with_capacity(spec.train.ensemble);
    for m in 0..spec.train.ensemble {
        let seed = seeds::member_seed(cfg.init_seed, m);
        match train_member(variant, &sets, cfg, seed, m == 0)? {
            Trained::Done(member) => members.push(member),
            Trained::Diverged(result) => {
                return Ok(Round {
                    result,
                    nets: Vec::new(),
                });
            }
        }
    }
    let result = measure_round(spec, &sets, &members, cfg.epochs)?;
    let nets = members.into_iter().map(|m| m.net).collect();
    Ok(Round { result, nets })
}

/// A trained round: its result and its networks (an ensemble's members; none when it
/// diverged).
pub struct Round {
    pub result: RoundResult,
    pub nets: Vec<Network>,
}

/// The test samples of the round of `cfg`, normalized as its training samples were, with the
/// views its spec measures through: the round's own (on which the round's kept networks give
/// its stored test error, bit for bit), or with `other`, `n` test samples of another dataset
/// drawn with the round's data seed.
pub fn kept_test_set(
    variant: &Variant,
    cfg: RoundConfig,
    other: Option<(&Dataset, usize)>,
) -> Result<(Samples, Option<Views>)> {
    let spec = &variant.spec;
    let sets = prepare(spec, &variant.data, cfg)?;
    let views = spec
        .train
        .tta
        .map(|t| Views::shifts(t.shift, sets.norm, sets.side));
    let Some((data, n)) = other else {
        return Ok((sets.test, views));
    };
    let seed = (cfg.data_seed, seeds::TEST_PAIRS);
    let mut test = crate::data::sample_set(&data.test, spec.task, n, seed, "test")?;
    sets.norm.apply(&mut test.input);
    Ok((test, views))
}

/// The round's result from its trained members.
fn measure_round(
    spec: &Spec,
    sets: &Sets,
    members: &[Member],
    epochs: usize,
) -> Result<RoundResult> {
    // Only outputs trained as digit classes have a digit error worth reporting.
    let digit_filter = |d: Option<f64>| d.filter(|_| spec.model.aux_loss > 0.0);
    let views = spec
        .train
        .tta
        .map(|t| Views::shifts(t.shift, sets.norm, sets.side));
    let nets: Vec<&Network> = members.iter().map(|m| &m.net).collect();
    let one = members.len() == 1 && views.is_none();
    let measured = |set: &Samples| evaluate(&nets, set, views.as_ref());
    let Some(train) = measured(&sets.train)? else {
        let curve = if one {
            members[0].curve.clone()
        } else {
            Vec::new()
        };
        return Ok(diverged(
            epochs,
            if one { members[0].loss } else { f64::NAN },
            curve,
        ));
    };
    // A single network's test errors were measured as it finished training.
    let test = if one {
        Some(members[0].test.clone())
    } else {
        evaluate_detailed(&nets, &sets.test, views.as_ref())?
    };
    let Some((test, detail)) = test else {
        return Ok(diverged(epochs, f64::NAN, Vec::new()));
    };
    let digits = detail
        .digits
        .as_deref()
        .filter(|_| spec.model.aux_loss > 0.0);
    let breakdown = Breakdown::of(
        &sets.test,
        spec.task.kind,
        sets.classes,
        (&detail.predicted, &detail.confidence),
        digits,
    );
    let validation_error = match (&sets.validation, one) {
        (_, true) => members[0].validation_error,
        (Some(v), false) => measured(v)?.map(|e| e.pair),
        (None, false) => None,
    };
    let params: Vec<Param> = members
        .iter()
        .flat_map(|m| m.net.params.iter().cloned())
        .collect();
    Ok(RoundResult {
        final_train_loss: members.iter().map(|m| m.loss).sum::<f64>() / members.len() as f64,
        train_error: Some(train.pair),
        test_error: Some(test.pair),
        digit_test_error: digit_filter(test.digit),
        status: Status::Ok,
        weights: Some(weights_hash(&params)),
        curve: members[0].curve.clone(),
        validation_error,
        breakdown: Some(breakdown),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The held-out pairs are the last share, whole pairs: no image of theirs is left in
    /// the training pairs (pairs are drawn without replacement, so each image is in one).
    #[test]
    fn validation_pairs_share_no_digit_with_training_pairs() {
        let data = Dataset::load(std::path::Path::new("data/mnist"), 2).unwrap();
        let task = crate::spec::Task::SEED;
        let (mut train, _) = draw(&data.train, &data.test, task, (100, 100), 9).unwrap();
        let all = train.clone();
        let held = hold_out(&mut train, 0.2).unwrap();
        assert_eq!((train.len(), held.len()), (80, 20));
        assert_eq!(held.target, all.target[80..]);
        let images = |s: &Samples| -> Vec<Vec<u32>> {
            s.input
                .chunks_exact(train.pixels)
                .map(|im| im.iter().map(|v| v.to_bits()).collect())
                .collect()
        };
        let kept = images(&train);
        assert!(images(&held).iter().all(|im| !kept.contains(im)));
        assert!(hold_out(&mut train, 0.0).is_none());
    }
}
