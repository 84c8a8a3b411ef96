//! Training and measuring a round: `round.rs` the loop, `loss.rs` the training loss,
//! `predict.rs` the prediction rules, `eval.rs` the one evaluation of any pair set,
//! `norm.rs` the pixels' normalization, `optim.rs` the optimizers, `augment.rs` the
//! transforms of the training digits.

mod augment;
mod eval;
mod loss;
mod norm;
mod optim;
mod predict;
mod round;

pub use augment::{Affine, augment};
pub use eval::{Errors, Views, evaluate};
pub use norm::Normalization;
pub use optim::Optim;
pub use predict::{pair_probability, sum_distribution};
pub use round::{Round, RoundConfig, kept_test_set, train_round, weights_hash};

pub use crate::record::{EpochPoint, RoundResult, Status};
