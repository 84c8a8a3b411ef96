//! Trainable parameters: values the ops read without copying, and the dfdx tensor that names
//! each parameter's gradient on the tape.

use std::sync::Arc;

use dfdx::prelude::{Cpu, CpuError, Gradients, Tensor, ZerosTensor};

/// A trainable parameter, stored flat and laid out like PyTorch's (e.g. a conv weight
/// `out x in x k x k`).
///
/// dfdx lends no view of a tensor's data, so reading a parameter kept in a tensor costs a copy
/// per op call, and updating it another. The values therefore live here, shared (`Arc`) with
/// the backward passes that need them; [`Param::values_mut`] updates them in place once those
/// passes are gone. The tensor only names the gradient (by id and length): its own data are
/// zeros and never read.
#[derive(Clone, Debug)]
pub struct Param {
    values: Arc<Vec<f32>>,
    slot: Tensor<(usize,), f32, Cpu>,
}

impl Param {
    /// A parameter holding `values`.
    pub fn new(dev: &Cpu, values: Vec<f32>) -> Self {
        let slot = dev.zeros_like(&(values.len(),));
        Param {
            values: Arc::new(values),
            slot,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values, shared: what a backward pass keeps.
    pub(crate) fn shared(&self) -> Arc<Vec<f32>> {
        Arc::clone(&self.values)
    }

    /// The values, to change. A copy is made only while something else still shares them
    /// (a clone of this parameter, or a backward pass not yet run).
    pub fn values_mut(&mut self) -> &mut [f32] {
        let v: &mut Vec<f32> = Arc::make_mut(&mut self.values);
        v
    }

    /// This parameter's gradient in `grads` (zeros allocated when nothing reached it).
    pub fn grad_mut<'a>(
        &self,
        grads: &'a mut Gradients<f32, Cpu>,
    ) -> Result<&'a mut [f32], CpuError> {
        let g = grads.get_or_alloc_mut(&self.slot)?;
        Ok(&mut g[..])
    }

    /// A copy of this parameter's gradient in `grads`.
    ///
    /// # Panics
    /// When `grads` holds none for it (as dfdx's `Gradients::get`).
    pub fn grad(&self, grads: &Gradients<f32, Cpu>) -> Vec<f32> {
        grads.get(&self.slot).as_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changing a parameter changes it alone: a clone (or a backward pass holding its values)
    /// keeps what it saw.
    #[test]
    fn values_mut_leaves_sharers_alone() {
        let mut p = Param::new(&Cpu::default(), vec![1.0, 2.0]);
        let (seen, kept) = (p.clone(), p.shared());
        p.values_mut()[0] = 5.0;
        assert_eq!(p.values(), [5.0, 2.0]);
        assert_eq!(seen.values(), [1.0, 2.0]);
        assert_eq!(*kept, [1.0, 2.0]);
        assert_eq!(p.len(), 2);
    }
}
