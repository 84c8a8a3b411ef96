//! Specs into networks: [`plan`] checks every shape and counts parameters before anything
//! runs, as typed layers ([`LayerPlan`]); [`Network::new`] builds the dfdx network a plan
//! describes.

mod network;
mod plan;
mod sequential;

pub use network::{DigitLogits, Input, NetState, Network, Outputs};
pub use plan::{
    DataShape, LayerOp, LayerPlan, MAX_PARAMS, MAX_VALUES, Plan, Shape3, StackKind, infer_layer,
    plan, show,
};
