//! Adam, AdamW and SGD with momentum over the network's flat parameters (PyTorch's update rules;
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

    /// One update of every parameter from `grads` (a parameter without a gradient gets zero),
    /// with the learning rate scaled by `factor` (the schedule's). `params` must be the ones
    /// this optimizer was made for, changed by nothing else.
    pub fn step(&mut self, params: &mut [Param], grads: &mut Gradients<f32, Cpu>, factor: f64) {
        self.steps += 1;
        // A factor of exactly 1 leaves the arithmetic as it was without schedules.
        let scaled = |lr: f32| {
            if factor == 1.0 {
                lr
            } else {
                (f64::from(lr) * factor) as f32
            }
        };
        for (i, p) in params.iter_mut().enumerate() {
            let g: &[f32] = p.grad_mut(grads).expect("CPU allocation");
            // In place: the tape that shared the values is gone by now.
            let w = p.values_mut();
            match self.config {
                Optimizer::Adam {
                    lr,
                    betas: [b1, b2],
                    weight_decay,
                }
                | Optimizer::Adamw {
                    lr,
                    betas: [b1, b2],
                    weight_decay,
                } => {
                    let lr = scaled(lr);
                    // AdamW decays the weights apart from the gradient, before the Adam step
                    // (PyTorch's arrangement); Adam adds the decay to the gradient.
                    let decoupled = matches!(self.config, Optimizer::Adamw { .. });
                    if decoupled {
                        let keep = 1.0 - lr * weight_decay;
                        w.iter_mut().for_each(|x| *x *= keep);
                    }
                    let (c1, c2) = (1.0 - b1.powi(self.steps), 1.0 - b2.powi(self.steps));
                    let (m, v) = (&mut self.first[i], &mut self.second[i]);
                    let step = AdamStep {
                        step: lr / c1,
                        b1,
                        b2,
                        weight_decay: if decoupled { 0.0 } else { weight_decay },
                        inv_sqrt_c2: 1.0 / c2.sqrt(),
                    };
                    adam(step, w, g, m, v);
                }
                Optimizer::Sgd {
                    lr,
                    momentum,
                    weight_decay,
                } => {
                    let lr = scaled(lr);
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

    /// One AdamW step by hand: decay first (w * (1 - lr * wd)), then Adam's first step,
    /// which moves every weight by lr * sign(g) (m / sqrt(v) = g / |g| at t = 1).
    #[test]
    fn adamw_decays_apart_from_the_gradient() {
        let dev = dfdx::prelude::Cpu::default();
        let mut params = vec![Param::new(&dev, vec![1.0, -2.0])];
        let config = Optimizer::Adamw {
            lr: 0.1,
            betas: [0.9, 0.999],
            weight_decay: 0.5,
        };
        let mut opt = Optim::new(config, &params);
        let mut grads = Gradients::leaky();
        params[0]
            .grad_mut(&mut grads)
            .unwrap()
            .copy_from_slice(&[1.0, 1.0]);
        // A gradient of 1 for both: Adam's first step moves both down by lr.
        opt.step(&mut params, &mut grads, 1.0);
        let w = params[0].values();
        let want = [1.0 * (1.0 - 0.05) - 0.1, -2.0 * (1.0 - 0.05) - 0.1];
        for (a, b) in w.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{a} against {b}");
        }
    }

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
