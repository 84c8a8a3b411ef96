//! Where a round's test errors are: its test samples and wrong predictions by class (a K x K
//! table by the classes of a pair's two images, or K to classify), the confusion of its
//! class outputs, and its most confidently wrong test samples. Recorded at training time, so
//! that `lesser report` draws everything from the store.

use crate::data::Samples;
use crate::spec::TaskKind;

/// How many of a round's most confidently wrong test samples are kept.
pub const WORST: usize = 8;

/// Where one round's test errors are.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    pub classes: usize,
    /// Test samples per cell: `class0 * K + class1` for pairs, the class to classify.
    pub samples: Vec<u32>,
    /// Wrong predictions per cell.
    pub wrong: Vec<u32>,
    /// `true * K + predicted` counts of the class outputs (digits trained as classes, or the
    /// class itself to classify).
    pub confusion: Option<Vec<u32>>,
    /// `(test sample, probability of its wrong prediction)`, most confident first.
    pub worst: Vec<(u32, f64)>,
}

impl Breakdown {
    /// The breakdown of predictions (`predicted`, `confidence`, `digits` per image) on `set`,
    /// samples of a `kind` task over `classes` classes.
    pub fn of(
        set: &Samples,
        kind: TaskKind,
        classes: usize,
        (predicted, confidence): (&[u16], &[f64]),
        digits: Option<&[usize]>,
    ) -> Breakdown {
        let cells = if kind == TaskKind::Pairs {
            classes * classes
        } else {
            classes
        };
        let (mut samples, mut wrong) = (vec![0u32; cells], vec![0u32; cells]);
        let mut worst: Vec<(u32, f64)> = Vec::new();
        for i in 0..set.len() {
            let c = set.sample_classes(i);
            let cell = c.iter().fold(0, |acc, &k| acc * classes + usize::from(k));
            samples[cell] += 1;
            if predicted[i] != set.target[i] {
                wrong[cell] += 1;
                worst.push((i as u32, confidence[i]));
            }
        }
        // Most confident first; ties by index, so the choice is the same everywhere.
        worst.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        worst.truncate(WORST);
        let confusion = match kind {
            TaskKind::Classify => Some(confusion(
                classes,
                &set.classes,
                predicted.iter().map(|&p| usize::from(p)),
            )),
            TaskKind::Pairs => digits.map(|d| confusion(classes, &set.classes, d.iter().copied())),
        };
        Breakdown {
            classes,
            samples,
            wrong,
            confusion,
            worst,
        }
    }

    /// Wrong predictions in all.
    pub fn wrong_total(&self) -> u32 {
        self.wrong.iter().sum()
    }

    /// As one store field: `K;samples;wrong;confusion;worst`, numbers space-separated, a
    /// worst sample as `index:probability` (exact).
    pub fn to_text(&self) -> String {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        let worst: Vec<String> = self
            .worst
            .iter()
            .map(|(i, p)| format!("{i}:{p:?}"))
            .collect();
        format!(
            "{};{};{};{};{}",
            self.classes,
            list(&self.samples),
            list(&self.wrong),
            self.confusion.as_deref().map(list).unwrap_or_default(),
            worst.join(" ")
        )
    }

    /// Parses [`Breakdown::to_text`]; `None` for anything malformed or inconsistent.
    pub fn from_text(s: &str) -> Option<Breakdown> {
        let f: Vec<&str> = s.split(';').collect();
        let [k, samples, wrong, confusion, worst] = f.as_slice() else {
            return None;
        };
        let classes: usize = k.parse().ok().filter(|&k| (2..=256).contains(&k))?;
        let list = |t: &str| -> Option<Vec<u32>> {
            t.split_whitespace().map(|x| x.parse().ok()).collect()
        };
        let (samples, wrong) = (list(samples)?, list(wrong)?);
        let cells_ok = samples.len() == classes * classes || samples.len() == classes;
        if !cells_ok
            || wrong.len() != samples.len()
            || wrong.iter().zip(&samples).any(|(w, s)| w > s)
        {
            return None;
        }
        let confusion = match *confusion {
            "" => None,
            t => Some(list(t).filter(|c| c.len() == classes * classes)?),
        };
        let worst = worst
            .split_whitespace()
            .map(|w| {
                let (i, p) = w.split_once(':')?;
                let p: f64 = p.parse().ok().filter(|p| (0.0..=1.0).contains(p))?;
                Some((i.parse().ok()?, p))
            })
            .collect::<Option<Vec<(u32, f64)>>>()?;
        (worst.len() <= WORST).then_some(Breakdown {
            classes,
            samples,
            wrong,
            confusion,
            worst,
        })
    }
}

/// `true * K + predicted` counts.
fn confusion(classes: usize, truth: &[u8], predicted: impl Iterator<Item = usize>) -> Vec<u32> {
    let mut m = vec![0u32; classes * classes];
    for (&t, p) in truth.iter().zip(predicted) {
        if p < classes {
            m[usize::from(t) * classes + p] += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Task;

    /// Cells count every sample and every wrong one; the worst are the most confident wrong
    /// ones, ties by index; the confusion is of the images' classes.
    #[test]
    fn cells_count_samples_and_errors() {
        let set = Samples {
            input: vec![0.0; 5 * 2],
            target: [(0, 1), (1, 0), (1, 1), (2, 0), (0, 1)]
                .iter()
                .map(|&(a, b)| Task::SEED.target(&[a, b]))
                .collect(),
            classes: vec![0, 1, 1, 0, 1, 1, 2, 0, 0, 1],
            images: 2,
            pixels: 1,
        };
        // Wrong: samples 1 and 4 (and 3 is right).
        let predicted = [1, 1, 1, 0, 0];
        let confidence = [0.9, 0.8, 0.7, 0.6, 0.8];
        let digits = [0, 1, 1, 1, 1, 1, 2, 0, 0, 2];
        let b = Breakdown::of(
            &set,
            TaskKind::Pairs,
            3,
            (&predicted, &confidence),
            Some(&digits),
        );
        assert_eq!(b.samples.iter().sum::<u32>(), 5);
        assert_eq!(b.samples[1], 2, "(0, 1) twice");
        assert_eq!(b.wrong_total(), 2);
        assert_eq!((b.wrong[3], b.wrong[1]), (1, 1), "(1, 0) and (0, 1)");
        assert_eq!(b.worst, vec![(1, 0.8), (4, 0.8)]);
        let c = b.confusion.as_ref().unwrap();
        assert_eq!(c.iter().sum::<u32>(), 10);
        assert_eq!((c[1], c[3 + 2]), (1, 1), "a 0 seen as 1, a 1 seen as 2");
        assert_eq!(Breakdown::from_text(&b.to_text()), Some(b));
    }
}
