//! Neural-network operations on dfdx's runtime-shaped CPU tensors, with hand-written backward
//! passes recorded on dfdx's tape through its public custom-op API.
//!
//! dfdx 0.13 compiles its own conv2d, pool2d and convtrans2d out on stable Rust; these ops fill
//! the gap. An op's meaning (forward, backward, tape) lives here; its arithmetic runs on the
//! kernels of [`crate::kernels`]. Stride-1 convolutions run 16 images at a time ([`lanes`]),
//! with a following ReLU and 2x2 max pool fused in and convolutions in a row chained; other
//! strides on im2col and one matrix product per batch ([`im2col`]). Every activation
//! is a 4-D NCHW tensor [`Act`]; a flat feature vector is `(batch, features, 1, 1)`. Every
//! parameter is a flat [`Param`], laid out like PyTorch's
//! (e.g. conv weight `out x in x k x k`).

pub mod im2col;
pub mod lanes;

mod conv;
mod conv_transpose;
mod dropout;
mod elementwise;
mod linear;
mod loss;
mod norm;
mod pairs;
mod param;
mod pool;

pub use crate::kernels::Epilogue;
pub use conv::{ChainLayer, ChainNorm, Conv2dGeometry, conv2d, conv2d_chain, conv2d_fused};
pub use conv_transpose::{ConvTranspose2dGeometry, conv_transpose2d};
pub use dropout::dropout;
pub use elementwise::{Activation, activation, threshold, upsample_nearest};
pub use linear::linear;
pub use loss::{argmax, cross_entropy, cross_entropy_smoothed, logits_argmax};
pub use norm::{BatchNormState, batch_norm2d};
pub use pairs::{concat_features, pair_features};
pub use param::Param;
pub use pool::{PoolKind, pool_out_side, pool2d};

use dfdx::prelude::{
    Cpu, CpuError, Gradients, HasShape, Shape, SplitTape, Tape, Tensor, TensorFromVec,
};
use dfdx::tensor::PutTape;

/// Shape of every activation: `(batch, channels, height, width)`.
pub type Dims4 = (usize, usize, usize, usize);
/// An activation tensor carrying tape `T` (`OwnedTape` when training, `NoneTape` otherwise).
pub type Act<T> = Tensor<Dims4, f32, Cpu, T>;
/// What a backward closure may fail with.
pub type BackwardResult = Result<(), CpuError>;

/// The tapes ops accept.
pub trait OpTape: Tape<f32, Cpu> {}
impl<T: Tape<f32, Cpu>> OpTape for T {}

/// Copies a contiguous tensor's values out (one memcpy).
pub fn values<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Adds `g` into the gradient slot `slot` (already allocated to the right length).
pub(crate) fn add_into(slot: &mut [f32], g: &[f32]) {
    debug_assert_eq!(slot.len(), g.len());
    for (s, v) in slot.iter_mut().zip(g) {
        *s += v;
    }
}

/// Adds `g` to the gradient of parameter `p`.
pub(crate) fn add_param_grad(
    grads: &mut Gradients<f32, Cpu>,
    p: &Param,
    g: &[f32],
) -> BackwardResult {
    add_into(p.grad_mut(grads)?, g);
    Ok(())
}

/// The shared plumbing of a unary op: wraps the forward result `out` (shape `dims`) as the
/// output of `x`, and records `backward`, which receives the output gradient and returns the
/// input gradient (or `None` when the input needs none) after adding any parameter gradients.
pub(crate) fn unary_op<T: OpTape, S: Shape>(
    x: Tensor<S, f32, Cpu, T>,
    out: Vec<f32>,
    dims: Dims4,
    backward: impl 'static
    + FnOnce(&[f32], &mut Gradients<f32, Cpu>) -> Result<Option<Vec<f32>>, CpuError>,
) -> Act<T> {
    let (x, mut tape) = x.split_tape();
    let y = x.device().tensor_from_vec(out, dims);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            // The output's gradient is complete and read by no one else: take it, no copy.
            let gy = std::mem::take(&mut **grads.get_or_alloc_mut(&yg)?);
            if let Some(gx) = backward(&gy, grads)? {
                add_into(grads.get_or_alloc_mut(&xg)?, &gx);
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// Checks a parameter's length against what a layer needs; a mismatch is a bug in the caller.
pub(crate) fn check_len(what: &str, p: &Param, expected: usize) -> crate::Result<()> {
    let found = p.len();
    if found != expected {
        return Err(crate::Error::Shape(format!(
            "{what}: parameter holds {found} values, expected {expected}"
        )));
    }
    Ok(())
}
