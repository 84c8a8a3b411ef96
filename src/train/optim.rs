//! Adam and SGD with momentum over the network's flat parameters (PyTorch's update rules;
//! dfdx's own `Adam` needs compile-time shapes).

use dfdx::prelude::{Cpu, Gradients};

use crate::kernels::{AdamStep, adam};
use crate::ops::Param;
use crate::spec::Optimizer;

/// An optimizer with one moment buffer (two for Adam) per parameter.
#[derive(Debug, Clone)]
pub struct Optim {
    config: Optimizer,
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
    steps: i32,
}

impl Optim {
    /// Fresh state for `params`.
    pub fn new(config: Optimizer, params: &[Param]) -> Self {
        let zeros = || params.iter().map(|p| vec![0.0; p.len()]).collect();
        Optim {
            config,
            first: zeros(),
            second: zeros(),
            steps: 0,
        }
    }

    /// One update of every parameter from `grads` (a parameter without a gradient gets zero).
    /// `params` must be the ones this optimizer was made for, changed by nothing else.
    pub fn step(&mut self, params: &mut [Param], grads: &mut Gradients<f32, Cpu>) {
        self.steps += 1;
        for (i, p) in params.iter_mut().enumerate() {
            let g: &[f32] = p.grad_mut(grads).expect("CPU allocation");
            // In place: the tape that shared the values is gone by now.
            let w = p.values_mut();
            match self.config {
                Optimizer::Adam {
                    lr,
                    betas: [b1, b2],
                    weight_decay,
                } => {
                    let (c1, c2) = (1.0 - b1.powi(self.steps), 1.0 - b2.powi(self.steps));
                    let (m, v) = (&mut self.first[i], &mut self.second[i]);
                    let step = AdamStep {
                        step: lr / c1,
                        b1,
                        b2,
                        weight_decay,
                        inv_sqrt_c2: 1.0 / c2.sqrt(),
                    };
                    adam(step, w, g, m, v);
                }
                Optimizer::Sgd {
                    lr,
                    momentum,
                    weight_decay,
                } => {
                    let buf = &mut self.first[i];
                    for j in 0..w.len() {
                        let gj = g[j] + weight_decay * w[j];
                        // PyTorch starts the momentum buffer at the first gradient.
                        buf[j] = if self.steps == 1 {
                            gj
                        } else {
                            momentum * buf[j] + gj
                        };
                        w[j] -= lr * if momentum > 0.0 { buf[j] } else { gj };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three Adam steps against PyTorch's update rule computed in f64.
    #[test]
    fn adam_follows_pytorch() {
        let (lr, b1, b2, wd, eps) = (0.01f64, 0.9f64, 0.999f64, 0.1f64, 1e-8f64);
        let grads = [
            [0.5, -2.0, 1e-3, 0.0],
            [0.25, 1.0, -1e-3, 3.0],
            [-1.0, 0.5, 0.0, -3.0],
        ];
        let (mut w, mut m, mut v) = (vec![1.0f32, -0.5, 0.25, 2.0], vec![0.0; 4], vec![0.0; 4]);
        let (mut rw, mut rm, mut rv) = ([1.0f64, -0.5, 0.25, 2.0], [0.0f64; 4], [0.0f64; 4]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            let step = AdamStep {
                step: (lr / c1) as f32,
                b1: b1 as f32,
                b2: b2 as f32,
                weight_decay: wd as f32,
                inv_sqrt_c2: (1.0 / c2.sqrt()) as f32,
            };
            let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
            adam(step, &mut w, &g32, &mut m, &mut v);
            for j in 0..4 {
                let g = g[j] + wd * rw[j];
                rm[j] = b1 * rm[j] + (1.0 - b1) * g;
                rv[j] = b2 * rv[j] + (1.0 - b2) * g * g;
                rw[j] -= lr / c1 * rm[j] / (rv[j].sqrt() / c2.sqrt() + eps);
                let err = (f64::from(w[j]) - rw[j]).abs();
                assert!(
                    err < 1e-6,
                    "step {t}, weight {j}: {} against {}",
                    w[j],
                    rw[j]
                );
            }
        }
    }
}
