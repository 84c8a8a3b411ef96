//! One round: draw the pairs, build the network from the round's seed, train it, measure it.

mod augment;
mod optim;

pub use augment::{Affine, augment};

pub use optim::Optim;

use dfdx::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::compile::DIGIT_CLASSES;
use crate::compile::{DigitLogits, Input, NetState, Network, Outputs};
use crate::data::{Mnist, PIXELS, PairSet, generate_pair_sets, repair};
use crate::error::Result;
use crate::ops::{Act, Param, cross_entropy_smoothed, logits_argmax};
use crate::spec::{Compare, Normalize, Spec};
use crate::variants::Variant;

pub use crate::record::{EpochPoint, RoundResult, Status};

/// The knobs of one round that do not come from the spec.
#[derive(Debug, Clone, Copy)]
pub struct RoundConfig {
    pub pairs: usize,
    pub epochs: usize,
    pub data_seed: u64,
    pub init_seed: u64,
}

/// Scales `set`'s pixels in place by the spec's normalization, using the train set's stats.
fn normalize(
    kind: Normalize,
    train: &mut PairSet,
    test: &mut PairSet,
    validation: Option<&mut PairSet>,
) -> (f32, f32) {
    let (shift, scale) = match kind {
        Normalize::None => return (0.0, 1.0),
        Normalize::Scale => (0.0, 1.0 / 255.0),
        Normalize::Standardize => {
            let n = train.input.len() as f64;
            let mean = train.input.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = train
                .input
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            (mean as f32, 1.0 / (var.sqrt().max(1e-12) as f32))
        }
    };
    let held = validation.map(|v| &mut v.input[..]).unwrap_or_default();
    for v in train
        .input
        .iter_mut()
        .chain(test.input.iter_mut())
        .chain(held)
    {
        *v = (*v - shift) * scale;
    }
    (shift, scale)
}

/// The rows of `set` at `idx`, gathered into one batch.
struct Batch {
    pairs: Vec<f32>,
    target: Vec<u8>,
    reversed_target: Vec<u8>,
    /// Digit classes in network order: `c0, c1` of pair 0, then pair 1, ...
    classes: Vec<u8>,
}

fn gather(set: &PairSet, idx: &[usize]) -> Batch {
    let mut b = Batch {
        pairs: Vec::with_capacity(idx.len() * 2 * PIXELS),
        target: Vec::with_capacity(idx.len()),
        reversed_target: Vec::with_capacity(idx.len()),
        classes: Vec::with_capacity(2 * idx.len()),
    };
    for &i in idx {
        b.pairs
            .extend_from_slice(&set.input[i * 2 * PIXELS..(i + 1) * 2 * PIXELS]);
        b.target.push(set.target[i]);
        let [c0, c1] = set.classes[i];
        b.reversed_target.push(u8::from(c1 <= c0));
        b.classes.extend([c0, c1]);
    }
    b
}

type Loss = Tensor<(), f32, Cpu, OwnedTape<f32, Cpu>>;

/// Adds `w * l` to the running total.
fn add(total: Option<Loss>, l: Loss, w: f32) -> Option<Loss> {
    let l = if w == 1.0 { l } else { l * w };
    Some(match total {
        Some(t) => t + l,
        None => l,
    })
}

/// The training loss of one batch: comparison cross-entropy, plus the weighted digit losses
/// (summed over both digits) and the reversed-pair loss when the spec turns them on.
fn batch_loss(spec: &Spec, out: Outputs<OwnedTape<f32, Cpu>>, b: &Batch) -> Loss {
    let m = &spec.model;
    let eps = spec.train.label_smoothing;
    let cross_entropy = |l, t: &[u8]| cross_entropy_smoothed(l, t, eps);
    let mut total = None;
    if let Some(c) = out.compare {
        total = add(total, cross_entropy(c, &b.target), 1.0);
    }
    if let Some(r) = out.reversed {
        total = add(total, cross_entropy(r, &b.reversed_target), m.asymmetry);
    }
    if let Some(d) = out.digits
        && m.aux_loss > 0.0
    {
        match d {
            // The mean over 2B rows is half the sum of the two digits' means.
            DigitLogits::Interleaved(d) => {
                total = add(total, cross_entropy(d, &b.classes), 2.0 * m.aux_loss);
            }
            DigitLogits::Split(d0, d1) => {
                let (c0, c1): (Vec<u8>, Vec<u8>) =
                    b.classes.chunks_exact(2).map(|c| (c[0], c[1])).unzip();
                total = add(total, cross_entropy(d0, &c0), m.aux_loss);
                total = add(total, cross_entropy(d1, &c1), m.aux_loss);
            }
        }
    }
    total.expect("a resolved spec always has a loss")
}

/// Predicted target (1 = first digit lesser or equal) and digit classes of a batch.
fn predict<T>(out: &Outputs<T>, compare: Compare) -> (Vec<u8>, Option<Vec<usize>>) {
    let digits = out.digits.as_ref().map(|d| match d {
        DigitLogits::Interleaved(d) => logits_argmax(d),
        DigitLogits::Split(d0, d1) => {
            let (a, b) = (logits_argmax(d0), logits_argmax(d1));
            a.iter().zip(&b).flat_map(|(&x, &y)| [x, y]).collect()
        }
    });
    let target = match (&out.compare, &out.digits) {
        (Some(c), _) => logits_argmax(c).iter().map(|&i| i as u8).collect(),
        (None, Some(d)) if compare == Compare::Probability => {
            let (p0, p1) = digit_probabilities(d);
            p0.iter()
                .zip(&p1)
                .map(|(a, b)| u8::from(lesser_or_equal(a, b) > 0.5))
                .collect()
        }
        (None, _) => digits
            .as_ref()
            .map(|d| d.chunks_exact(2).map(|c| u8::from(c[0] <= c[1])).collect())
            .unwrap_or_default(),
    };
    (target, digits)
}

/// Softmax of each row of `(B, 10)` logits.
fn softmax_rows(v: &[f32]) -> Vec<[f64; DIGIT_CLASSES]> {
    v.chunks_exact(DIGIT_CLASSES)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            std::array::from_fn(|i| e[i] / sum)
        })
        .collect()
}

/// Each pair's two digit distributions.
fn digit_probabilities<T>(d: &DigitLogits<T>) -> (Vec<[f64; 10]>, Vec<[f64; 10]>) {
    match d {
        DigitLogits::Interleaved(d) => {
            let p = softmax_rows(&d.as_vec());
            (
                p.iter().step_by(2).copied().collect(),
                p.iter().skip(1).step_by(2).copied().collect(),
            )
        }
        DigitLogits::Split(d0, d1) => (softmax_rows(&d0.as_vec()), softmax_rows(&d1.as_vec())),
    }
}

/// `P(c0 <= c1) = sum over i <= j of p0(i) p1(j)`, the two digits taken as independent.
pub fn lesser_or_equal(p0: &[f64; 10], p1: &[f64; 10]) -> f64 {
    let mut at_least = 0.0; // P(c1 >= i), accumulated from the top
    let mut total = 0.0;
    for i in (0..10).rev() {
        at_least += p1[i];
        total += p0[i] * at_least;
    }
    total
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

/// Whether every parameter of the network is finite.
fn finite_params(params: &[Param]) -> bool {
    params
        .iter()
        .all(|p| p.values().iter().all(|v| v.is_finite()))
}

/// Comparison error and digit error of `net` on `set`, in evaluation mode; `None` when any
/// output is NaN or infinite (the round diverged, whatever the argmax would say).
pub fn evaluate(net: &Network, set: &PairSet) -> Result<Option<(f64, Option<f64>)>> {
    let idx: Vec<usize> = (0..set.len()).collect();
    let (mut wrong, mut digit_wrong, mut has_digits) = (0usize, 0usize, false);
    for chunk in idx.chunks(crate::variants::EVAL_CHUNK) {
        let b = gather(set, chunk);
        let out: Outputs<NoneTape> = net.forward(
            Input {
                pairs: &b.pairs,
                batch: chunk.len(),
            },
            false,
        )?;
        if !finite_outputs(&out) {
            return Ok(None);
        }
        let (pred, digits) = predict(&out, net.compare);
        wrong += pred.iter().zip(&b.target).filter(|(p, t)| p != t).count();
        if let Some(d) = digits {
            has_digits = true;
            digit_wrong += d
                .iter()
                .zip(&b.classes)
                .filter(|&(&p, &c)| p != c as usize)
                .count();
        }
    }
    let n = set.len().max(1) as f64;
    Ok(Some((
        wrong as f64 / n,
        has_digits.then(|| digit_wrong as f64 / (2.0 * n)),
    )))
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

/// The last `share` of `set`'s pairs, taken out of it (their digits with them: a pair's two
/// images are used by no other pair).
fn hold_out(set: &mut PairSet, share: f32) -> Option<PairSet> {
    if share == 0.0 {
        return None;
    }
    let n = ((set.len() as f64) * f64::from(share)).round() as usize;
    let keep = set.len() - n.clamp(1, set.len() - 1);
    Some(PairSet {
        input: set.input.split_off(keep * 2 * PIXELS),
        target: set.target.split_off(keep),
        classes: set.classes.split_off(keep),
    })
}

/// The best epoch so far on the validation pairs, for early stopping.
struct Best {
    error: f64,
    epoch: usize,
    state: NetState,
}

/// The round's pair sets, drawn and normalized once, shared by an ensemble's members.
struct Sets {
    /// The training pairs as drawn, normalized: what the training error is measured on.
    train: PairSet,
    /// The same, raw, when every epoch draws new pairs or augments (0 is no ink).
    raw: Option<PairSet>,
    test: PairSet,
    validation: Option<PairSet>,
    /// The normalization, `(v - shift) * scale`.
    shift: f32,
    scale: f32,
}

fn prepare(spec: &Spec, data: &Mnist, cfg: RoundConfig) -> Result<Sets> {
    let (mut train, mut test) =
        generate_pair_sets(&data.train, &data.test, cfg.pairs, cfg.data_seed)?;
    let mut validation = hold_out(&mut train, spec.train.validation);
    let fresh = spec.train.augment.is_some() || spec.train.repair;
    let raw = fresh.then(|| train.clone());
    let (shift, scale) = normalize(
        spec.train.normalize,
        &mut train,
        &mut test,
        validation.as_mut(),
    );
    Ok(Sets {
        train,
        raw,
        test,
        validation,
        shift,
        scale,
    })
}

/// One trained network of a round (the round's, or one member of its ensemble).
struct Member {
    net: Network,
    curve: Vec<EpochPoint>,
    loss: f64,
    /// Test error and digit error of the weights kept.
    test: (f64, Option<f64>),
    validation_error: Option<f64>,
}

/// The seed of member `m` of an ensemble: the round's own for the first, so that an
/// ensemble of one is the plain round.
fn member_seed(init_seed: u64, m: usize) -> u64 {
    if m == 0 {
        init_seed
    } else {
        init_seed ^ (m as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Trains one network from `seed` on `sets`; `Err` holds the round's result when it
/// diverged. Shuffling, re-pairing and augmentation draw from the seed's own streams. With
/// `measured`, the test and validation errors are measured for the curve after every
/// `curve_every`-th epoch and the last; without, only what early stopping needs (the
/// validation error) and, at the end, the test error (the curve then holds the training
/// figures alone).
fn train_member(
    variant: &Variant,
    sets: &Sets,
    cfg: RoundConfig,
    seed: u64,
    measured: bool,
) -> Result<std::result::Result<Member, RoundResult>> {
    let spec = &variant.spec;
    let mut net = Network::from_plan(spec, variant.plan.clone(), seed);
    let mut optim = Optim::new(spec.train.optimizer.clone(), &net.params);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let mut draws = ChaCha8Rng::seed_from_u64(seed);
    draws.set_stream(2);
    let mut train = sets.train.clone();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let per_epoch = train.len().div_ceil(spec.train.batch_size);
    let total_steps = per_epoch * cfg.epochs;
    let mut step = 0;
    let mut epoch_loss = f64::NAN;
    let mut curve: Vec<EpochPoint> = Vec::with_capacity(cfg.epochs);
    let mut last_test = None;
    let mut best: Option<Best> = None;
    for epoch in 1..=cfg.epochs {
        if let Some(raw) = &sets.raw {
            train = if spec.train.repair {
                repair(raw, &mut draws)
            } else {
                raw.clone()
            };
            if let Some(a) = &spec.train.augment {
                train.input = augment(&train.input, a, &mut draws);
            }
            let (shift, scale) = (sets.shift, sets.scale);
            train
                .input
                .iter_mut()
                .for_each(|v| *v = (*v - shift) * scale);
        }
        order.shuffle(&mut rng);
        let (mut sum, mut wrong) = (0.0f64, 0usize);
        for chunk in order.chunks(spec.train.batch_size) {
            let b = gather(&train, chunk);
            let input = Input {
                pairs: &b.pairs,
                batch: chunk.len(),
            };
            let out = net.forward(input, true)?;
            let (pred, _) = predict(&out, spec.model.compare);
            wrong += pred.iter().zip(&b.target).filter(|(p, t)| p != t).count();
            let loss = batch_loss(spec, out, &b);
            let value = f64::from(loss.array());
            if !value.is_finite() {
                return Ok(Err(diverged(epoch, value, curve)));
            }
            sum += value * chunk.len() as f64;
            let mut grads = loss.backward();
            let factor = spec.train.schedule.factor(step, total_steps, per_epoch);
            optim.step(&mut net.params, &mut grads, factor);
            step += 1;
        }
        epoch_loss = sum / train.len() as f64;
        if !finite_params(&net.params) {
            return Ok(Err(diverged(epoch, epoch_loss, curve)));
        }
        let last = epoch == cfg.epochs;
        let on_curve = measured && (epoch % spec.train.curve_every == 0 || last);
        // The last epoch's test error is the round's, curve or not.
        let test_now = if on_curve || last {
            let Some(t) = evaluate(&net, &sets.test)? else {
                return Ok(Err(diverged(epoch, epoch_loss, curve)));
            };
            Some(t)
        } else {
            None
        };
        let validation_error = match &sets.validation {
            Some(v) if on_curve || spec.train.early_stopping.is_some() => {
                match evaluate(&net, v)? {
                    Some((e, _)) => Some(e),
                    None => return Ok(Err(diverged(epoch, epoch_loss, curve))),
                }
            }
            _ => None,
        };
        curve.push(EpochPoint {
            train_loss: epoch_loss,
            train_error: wrong as f64 / train.len() as f64,
            test_error: test_now.filter(|_| measured).map(|t| t.0),
            validation_error,
        });
        last_test = test_now;
        if let (Some(stop), Some(e)) = (spec.train.early_stopping, validation_error) {
            if best.as_ref().is_none_or(|b| e < b.error) {
                best = Some(Best {
                    error: e,
                    epoch,
                    state: net.state(),
                });
            } else if best
                .as_ref()
                .is_some_and(|b| epoch - b.epoch >= stop.patience)
            {
                break;
            }
        }
    }
    let mut validation_error = curve.last().and_then(|p| p.validation_error);
    if let Some(b) = best.filter(|b| b.epoch != curve.len()) {
        // Back to the best epoch's weights; the round is measured with them.
        net.set_state(&b.state);
        validation_error = Some(b.error);
        last_test = evaluate(&net, &sets.test)?;
    } else if last_test.is_none() && !curve.is_empty() {
        // Stopped early after an epoch whose test error was not measured.
        last_test = evaluate(&net, &sets.test)?;
    }
    // Otherwise the last epoch's test evaluation is the round's: the network has not
    // changed since.
    let Some(test) = last_test else {
        return Ok(Err(diverged(cfg.epochs, epoch_loss, curve)));
    };
    Ok(Ok(Member {
        net,
        curve,
        loss: epoch_loss,
        test,
        validation_error,
    }))
}

/// Trains `spec` for one round on `data` and measures it. The round is recorded as diverged
/// in the epoch where its loss, a parameter (checked after every epoch) or an output became
/// NaN or infinite: a network can hide NaN weights behind a finite loss.
///
/// With a validation share, the last share of the training pairs is held out (before the
/// normalization's statistics are taken) and measured after every epoch; with early
/// stopping, training stops once it has not improved for `patience` epochs, and the round is
/// measured with the best epoch's weights. An ensemble trains its members one after another,
/// each from its own seed, and is measured on their averaged probabilities; its curve is the
/// first member's (the others are not measured after every epoch, which saves a fifth of
/// their time).
pub fn train_round(variant: &Variant, data: &Mnist, cfg: RoundConfig) -> Result<RoundResult> {
    let spec = &variant.spec;
    let sets = prepare(spec, data, cfg)?;
    let mut members = Vec::with_capacity(spec.train.ensemble);
    for m in 0..spec.train.ensemble {
        // The round's curve is its first network's: the others skip the curve's measurements.
        match train_member(variant, &sets, cfg, member_seed(cfg.init_seed, m), m == 0)? {
            Ok(member) => members.push(member),
            Err(diverged) => return Ok(diverged),
        }
    }
    let digit_filter = |d: Option<f64>| d.filter(|_| spec.model.aux_loss > 0.0);
    let views = spec.train.tta.map(|t| tta_views(t.shift));
    if let (None, [one]) = (&views, members.as_slice()) {
        let Some((train_error, _)) = evaluate(&one.net, &sets.train)? else {
            return Ok(diverged(cfg.epochs, one.loss, one.curve.clone()));
        };
        return Ok(RoundResult {
            final_train_loss: one.loss,
            train_error: Some(train_error),
            test_error: Some(one.test.0),
            // Only outputs trained as digit classes have a digit error worth reporting.
            digit_test_error: digit_filter(one.test.1),
            status: Status::Ok,
            weights: Some(weights_hash(&one.net.params)),
            curve: one.curve.clone(),
            validation_error: one.validation_error,
        });
    }
    let nets: Vec<&Network> = members.iter().map(|m| &m.net).collect();
    let last = cfg.epochs;
    let measured = |set: &PairSet| match &views {
        Some(v) => evaluate_views(&nets, set, v, (sets.shift, sets.scale)),
        None => evaluate_ensemble(&nets, set),
    };
    let (Some(train_error), Some(test)) = (measured(&sets.train)?, measured(&sets.test)?) else {
        return Ok(diverged(last, f64::NAN, Vec::new()));
    };
    let validation_error = match &sets.validation {
        Some(v) => measured(v)?.map(|e| e.0),
        None => None,
    };
    let params: Vec<Param> = members
        .iter()
        .flat_map(|m| m.net.params.iter().cloned())
        .collect();
    Ok(RoundResult {
        final_train_loss: members.iter().map(|m| m.loss).sum::<f64>() / members.len() as f64,
        train_error: Some(train_error.0),
        test_error: Some(test.0),
        digit_test_error: digit_filter(test.1),
        status: Status::Ok,
        weights: Some(weights_hash(&params)),
        curve: members[0].curve.clone(),
        validation_error,
    })
}

/// Comparison and digit error of an ensemble on `set`: each pair's prediction from the
/// members' probabilities averaged (the comparison's, or the digits' for the argmax and
/// probability rules). `None` when an output is not finite.
fn evaluate_ensemble(nets: &[&Network], set: &PairSet) -> Result<Option<(f64, Option<f64>)>> {
    evaluate_sets(nets, &[set])
}

/// The views test-time augmentation averages over: the digits as they are, and shifted by
/// `shift` pixels left, right, up and down.
fn tta_views(shift: f32) -> Vec<Affine> {
    let s = f64::from(shift);
    [(0.0, 0.0), (s, 0.0), (-s, 0.0), (0.0, s), (0.0, -s)]
        .into_iter()
        .map(|(dx, dy)| Affine {
            dx,
            dy,
            degrees: 0.0,
            scale: 1.0,
        })
        .collect()
}

/// [`evaluate_ensemble`] over `views` of every pair as well (each digit transformed in raw
/// pixels, `norm` the normalization `(shift, scale)` to undo and redo), every view's
/// probabilities averaged with every member's.
fn evaluate_views(
    nets: &[&Network],
    set: &PairSet,
    views: &[Affine],
    (shift, scale): (f32, f32),
) -> Result<Option<(f64, Option<f64>)>> {
    let mut viewed = Vec::with_capacity(views.len());
    for v in views {
        let mut input = Vec::with_capacity(set.input.len());
        for digit in set.input.chunks_exact(PIXELS) {
            let raw: Vec<f32> = digit.iter().map(|x| x / scale + shift).collect();
            input.extend(v.apply(&raw).into_iter().map(|x| (x - shift) * scale));
        }
        viewed.push(PairSet {
            input,
            ..set.clone()
        });
    }
    let all: Vec<&PairSet> = viewed.iter().collect();
    evaluate_sets(nets, &all)
}

/// Comparison and digit error over the same pairs seen as `sets` (views), every member's and
/// every view's probabilities averaged.
fn evaluate_sets(nets: &[&Network], sets: &[&PairSet]) -> Result<Option<(f64, Option<f64>)>> {
    let set = sets[0];
    let compare = nets[0].compare;
    let idx: Vec<usize> = (0..set.len()).collect();
    let (mut wrong, mut digit_wrong, mut has_digits) = (0usize, 0usize, false);
    for chunk in idx.chunks(crate::variants::EVAL_CHUNK) {
        let b = gather(set, chunk);
        let n = chunk.len();
        let mut cmp = vec![0.0f64; 2 * n];
        let (mut p0, mut p1) = (vec![[0.0f64; 10]; n], vec![[0.0f64; 10]; n]);
        let views: Vec<Batch> = sets.iter().map(|v| gather(v, chunk)).collect();
        for (net, b) in nets
            .iter()
            .flat_map(|net| views.iter().map(move |b| (net, b)))
        {
            let input = Input {
                pairs: &b.pairs,
                batch: n,
            };
            let out: Outputs<NoneTape> = net.forward(input, false)?;
            if !finite_outputs(&out) {
                return Ok(None);
            }
            if let Some(c) = &out.compare {
                for (acc, p) in cmp.chunks_exact_mut(2).zip(softmax2(&c.as_vec())) {
                    acc[0] += p[0];
                    acc[1] += p[1];
                }
            }
            if let Some(d) = &out.digits {
                has_digits = true;
                let (q0, q1) = digit_probabilities(d);
                for (acc, q) in p0.iter_mut().zip(&q0).chain(p1.iter_mut().zip(&q1)) {
                    acc.iter_mut().zip(q).for_each(|(a, v)| *a += v);
                }
            }
        }
        let argmax =
            |p: &[f64; 10]| (0..10).fold(0, |best, i| if p[i] > p[best] { i } else { best });
        for i in 0..n {
            let pred = match compare {
                Compare::Learned => u8::from(cmp[2 * i + 1] > cmp[2 * i]),
                Compare::Argmax => u8::from(argmax(&p0[i]) <= argmax(&p1[i])),
                Compare::Probability => {
                    let k = (nets.len() * sets.len()) as f64;
                    let (a, c) = (p0[i].map(|v| v / k), p1[i].map(|v| v / k));
                    u8::from(lesser_or_equal(&a, &c) > 0.5)
                }
            };
            wrong += usize::from(pred != b.target[i]);
            if has_digits {
                let [c0, c1] = [b.classes[2 * i], b.classes[2 * i + 1]];
                digit_wrong += usize::from(argmax(&p0[i]) != c0 as usize);
                digit_wrong += usize::from(argmax(&p1[i]) != c1 as usize);
            }
        }
    }
    let n = set.len().max(1) as f64;
    Ok(Some((
        wrong as f64 / n,
        has_digits.then(|| digit_wrong as f64 / (2.0 * n)),
    )))
}

/// Softmax of each row of `(B, 2)` logits.
fn softmax2(v: &[f32]) -> Vec<[f64; 2]> {
    v.chunks_exact(2)
        .map(|r| {
            let m = r[0].max(r[1]);
            let (a, b) = (f64::from(r[0] - m).exp(), f64::from(r[1] - m).exp());
            [a / (a + b), b / (a + b)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(spec_text: &str, seed: u64) -> Network {
        // A file per call: tests run at once, and one must not read another's half-written.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lesser-ens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("e{n}.toml"));
        std::fs::write(&path, spec_text).unwrap();
        let spec = crate::spec::load(&path).unwrap().unwrap();
        Network::new(&spec, seed).unwrap()
    }

    const LEARNED: &str = r#"
[model]
weight_sharing = true
aux_loss = 1.0
digit = [{ layer = "flatten" }, { layer = "linear", out = 10 }]
head = [{ layer = "linear", in = 20, out = 2 }]
"#;

    /// An ensemble averages its members' probabilities: two copies of one network predict as
    /// it does, and two networks predict as their averaged softmax says, pair by pair.
    #[test]
    fn ensembles_average_probabilities() {
        let data = Mnist::load(std::path::Path::new("data/mnist")).unwrap();
        let (set, _) = generate_pair_sets(&data.train, &data.test, 60, 2).unwrap();
        let (a, b) = (network(LEARNED, 1), network(LEARNED, 2));
        let alone = evaluate(&a, &set).unwrap().unwrap();
        assert_eq!(evaluate_ensemble(&[&a, &a], &set).unwrap().unwrap(), alone);
        // By hand: each member's comparison softmax, averaged.
        let all: Vec<usize> = (0..set.len()).collect();
        let batch = gather(&set, &all);
        let probs = |net: &Network| {
            let input = Input {
                pairs: &batch.pairs,
                batch: set.len(),
            };
            let out: Outputs<NoneTape> = net.forward(input, false).unwrap();
            softmax2(&out.compare.unwrap().as_vec())
        };
        let (pa, pb) = (probs(&a), probs(&b));
        let wrong = (0..set.len())
            .filter(|&i| u8::from(pa[i][1] + pb[i][1] > pa[i][0] + pb[i][0]) != set.target[i])
            .count();
        let got = evaluate_ensemble(&[&a, &b], &set).unwrap().unwrap();
        assert_eq!(got.0, wrong as f64 / set.len() as f64);
        assert_ne!(evaluate(&b, &set).unwrap().unwrap(), alone);
    }

    /// Test-time augmentation averages five views: the pairs as they are and four one-pixel
    /// shifts; the identity view alone measures what plain evaluation does.
    #[test]
    fn test_time_augmentation_averages_shifted_views() {
        let views = tta_views(1.0);
        let shifts: Vec<(f64, f64)> = views.iter().map(|v| (v.dx, v.dy)).collect();
        assert_eq!(
            shifts,
            [(0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)]
        );
        let data = Mnist::load(std::path::Path::new("data/mnist")).unwrap();
        let (set, _) = generate_pair_sets(&data.train, &data.test, 60, 2).unwrap();
        let a = network(LEARNED, 1);
        let alone = evaluate(&a, &set).unwrap().unwrap();
        let identity = &views[..1];
        assert_eq!(
            evaluate_views(&[&a], &set, identity, (0.0, 1.0))
                .unwrap()
                .unwrap(),
            alone
        );
        // Five views: by hand, the shifted sets' softmax averaged with the plain one's.
        let by_hand = {
            let sets: Vec<PairSet> = views
                .iter()
                .map(|v| PairSet {
                    input: set
                        .input
                        .chunks_exact(PIXELS)
                        .flat_map(|d| v.apply(d))
                        .collect(),
                    ..set.clone()
                })
                .collect();
            let refs: Vec<&PairSet> = sets.iter().collect();
            evaluate_sets(&[&a], &refs).unwrap().unwrap()
        };
        assert_eq!(
            evaluate_views(&[&a], &set, &views, (0.0, 1.0))
                .unwrap()
                .unwrap(),
            by_hand
        );
    }

    /// The held-out pairs are the last share, whole pairs: no image of theirs is left in
    /// the training pairs (pairs are drawn without replacement, so each image is in one).
    #[test]
    fn validation_pairs_share_no_digit_with_training_pairs() {
        let data = Mnist::load(std::path::Path::new("data/mnist")).unwrap();
        let (mut train, _) = generate_pair_sets(&data.train, &data.test, 100, 9).unwrap();
        let all = train.clone();
        let held = hold_out(&mut train, 0.2).unwrap();
        assert_eq!((train.len(), held.len()), (80, 20));
        assert_eq!(held.target, all.target[80..]);
        let images = |s: &PairSet| -> Vec<Vec<u32>> {
            s.input
                .chunks_exact(PIXELS)
                .map(|im| im.iter().map(|v| v.to_bits()).collect())
                .collect()
        };
        let kept = images(&train);
        assert!(images(&held).iter().all(|im| !kept.contains(im)));
        assert!(hold_out(&mut train, 0.0).is_none());
    }
}
