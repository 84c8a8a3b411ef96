//! One training step's forward and backward of the convolution layers the seed networks use,
//! on a batch of 100 images: conv 1->6 k3 and 6->16 k3 on 14x14 (direct), 1->6 k5 and 6->16 k5
//! on 28x28 (SHres), with the input gradient unless the name says otherwise. Figures are
//! recorded in benches/README.md.

use criterion::{Criterion, criterion_group, criterion_main};
use dfdx::prelude::*;
use lesser::ops::{Conv2dGeometry, Epilogue, Param, conv2d_fused};

fn step(c: &mut Criterion, name: &str, cin: usize, cout: usize, k: usize, side: usize) {
    step_padded(c, name, cin, cout, k, side, 0, true, Epilogue::default())
}

/// A convolution with the ReLU and 2x2 max pool the seed networks put after it.
fn step_pooled(c: &mut Criterion, name: &str, cin: usize, cout: usize, k: usize, side: usize) {
    let epi = Epilogue {
        relu: true,
        max_pool2: true,
    };
    step_padded(c, name, cin, cout, k, side, 0, true, epi)
}

#[allow(clippy::too_many_arguments)]
fn step_padded(
    c: &mut Criterion,
    name: &str,
    cin: usize,
    cout: usize,
    k: usize,
    side: usize,
    padding: usize,
    input_grad: bool,
    epi: Epilogue,
) {
    let dev = Cpu::default();
    let n = 100;
    let x: Vec<f32> = (0..n * cin * side * side)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    let w = Param::new(&dev, vec![0.01; cout * cin * k * k]);
    let b = Param::new(&dev, vec![0.0; cout]);
    let geom = Conv2dGeometry {
        in_channels: cin,
        out_channels: cout,
        kernel: k,
        stride: 1,
        padding,
    };
    let xt = dev.tensor_from_vec(x, (n, cin, side, side));
    c.bench_function(name, |bench| {
        bench.iter(|| {
            let y = conv2d_fused(xt.leaky_trace(), &w, &b, geom, epi, input_grad).unwrap();
            y.sum::<(), _>().backward()
        })
    });
}

fn convs(c: &mut Criterion) {
    step(c, "conv 1->6 k3 14x14 fwd+bwd b100", 1, 6, 3, 14);
    step(c, "conv 6->16 k3 6x6 fwd+bwd b100", 6, 16, 3, 6);
    step(c, "conv 1->6 k5 28x28 fwd+bwd b100", 1, 6, 5, 28);
    step(c, "conv 6->16 k5 12x12 fwd+bwd b100", 6, 16, 5, 12);
    // The SHres smoothing convolution: one channel in and out, padding 1.
    step_padded(
        c,
        "conv 1->1 k3 p1 28x28 fwd+bwd b100",
        1,
        1,
        3,
        28,
        1,
        true,
        Epilogue::default(),
    );
    // A network's first layer needs no input gradient.
    step_padded(
        c,
        "conv 1->6 k3 14x14 fwd+bwd(no dx) b100",
        1,
        6,
        3,
        14,
        0,
        false,
        Epilogue::default(),
    );
    step_pooled(c, "conv 1->6 k5 28x28 +relu+pool fwd+bwd b100", 1, 6, 5, 28);
    step_pooled(
        c,
        "conv 6->16 k5 12x12 +relu+pool fwd+bwd b100",
        6,
        16,
        5,
        12,
    );
}

criterion_group!(benches, convs);
criterion_main!(benches);
