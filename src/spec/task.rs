//! The `[task]` table: what a round learns to predict from the data.

use serde::{Deserialize, Serialize};

/// What a sample is and what its target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub kind: TaskKind,
    /// For pairs: how the target follows from the two classes.
    pub relation: Relation,
}

impl Task {
    /// The seed study's task: pairs, `class0 <= class1`.
    pub const SEED: Task = Task {
        kind: TaskKind::Pairs,
        relation: Relation::Le,
    };

    /// Images in one sample.
    pub fn images(self) -> usize {
        match self.kind {
            TaskKind::Pairs => 2,
            TaskKind::Classify => 1,
        }
    }

    /// The target of a sample whose images have `classes`.
    pub fn target(self, classes: &[u8]) -> u16 {
        match self.kind {
            TaskKind::Pairs => self.relation.target(classes[0], classes[1]),
            TaskKind::Classify => u16::from(classes[0]),
        }
    }

    /// How many values the target takes with `classes` classes: what the network ends in.
    pub fn outputs(self, classes: usize) -> usize {
        match self.kind {
            TaskKind::Pairs => self.relation.outputs(classes),
            TaskKind::Classify => classes,
        }
    }

    /// The task in a few words, for reports: `pairs, class0 <= class1`, `classify`.
    pub fn describe(self) -> String {
        match self.kind {
            TaskKind::Pairs => format!("pairs, target = {}", self.relation.formula()),
            TaskKind::Classify => "classify".into(),
        }
    }

    /// The task in a word: the relation's name, or `classify`.
    pub fn short(self) -> &'static str {
        match (self.kind, self.relation) {
            (TaskKind::Classify, _) => "classify",
            (_, Relation::Le) => "le",
            (_, Relation::Lt) => "lt",
            (_, Relation::Eq) => "eq",
            (_, Relation::Sum) => "sum",
        }
    }

    pub fn is_seed(&self) -> bool {
        *self == Task::SEED
    }
}

/// One image and its class, or two images and a relation between their classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Pairs,
    Classify,
}

/// How a pair's target follows from its two classes `c0`, `c1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// 1 when `c0 <= c1` (the seed study's).
    Le,
    /// 1 when `c0 < c1`.
    Lt,
    /// 1 when `c0 == c1`: same class or not (verification).
    Eq,
    /// `c0 + c1`, one of `2K - 1` values.
    Sum,
}

impl Relation {
    pub fn target(self, c0: u8, c1: u8) -> u16 {
        match self {
            Relation::Le => u16::from(c0 <= c1),
            Relation::Lt => u16::from(c0 < c1),
            Relation::Eq => u16::from(c0 == c1),
            Relation::Sum => u16::from(c0) + u16::from(c1),
        }
    }

    /// Values the target takes with `classes` classes.
    pub fn outputs(self, classes: usize) -> usize {
        match self {
            Relation::Le | Relation::Lt | Relation::Eq => 2,
            Relation::Sum => (2 * classes).saturating_sub(1),
        }
    }

    /// Whether swapping the pair leaves the target as it was: then a reversed-pair loss
    /// teaches nothing new.
    pub fn symmetric(self) -> bool {
        matches!(self, Relation::Eq | Relation::Sum)
    }

    /// The target as a formula: `class0 <= class1`.
    pub fn formula(self) -> &'static str {
        match self {
            Relation::Le => "class0 <= class1",
            Relation::Lt => "class0 < class1",
            Relation::Eq => "class0 == class1",
            Relation::Sum => "class0 + class1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every relation's target against its definition, over every pair of 12 classes.
    #[test]
    fn targets_follow_their_definitions() {
        for c0 in 0..12u8 {
            for c1 in 0..12u8 {
                let t = |r: Relation| r.target(c0, c1);
                assert_eq!(t(Relation::Le), u16::from(c0 <= c1));
                assert_eq!(t(Relation::Lt), u16::from(c0 < c1));
                assert_eq!(t(Relation::Eq), u16::from(c0 == c1));
                assert_eq!(t(Relation::Sum), u16::from(c0) + u16::from(c1));
                assert!(usize::from(t(Relation::Sum)) < Relation::Sum.outputs(12));
                for r in [Relation::Eq, Relation::Sum] {
                    assert_eq!(r.target(c0, c1), r.target(c1, c0), "{r:?} is symmetric");
                }
            }
        }
        let classify = Task {
            kind: TaskKind::Classify,
            relation: Relation::Le,
        };
        assert_eq!(classify.target(&[7]), 7);
        assert_eq!(classify.outputs(26), 26);
        assert_eq!(Task::SEED.outputs(10), 2);
    }
}
