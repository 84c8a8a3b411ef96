//! The kernels behind one convolution step, timed one by one on the shapes of the seed
//! networks' convolutions (a batch of 200 digits: 100 pairs through a shared digit network),
//! to show where a step's time goes: the im2col + gemm path (strides above 1) kernel by kernel,
//! and the lane passes stride-1 convolutions use (`lesser::ops::lanes`). Figures are recorded in benches/README.md.

use criterion::{Criterion, criterion_group, criterion_main};
use lesser::kernels::Epilogue;
use lesser::ops::im2col::{MatRef, Window, cnhw_to_nchw, col2im_add, im2col, matmul, nchw_to_cnhw};
use lesser::ops::lanes;

fn kernels(c: &mut Criterion) {
    let n = 200;
    for &(ch, side, out, k) in &[(1, 14, 6, 3), (6, 6, 16, 3), (1, 28, 6, 5), (6, 12, 16, 5)] {
        let win = Window::new(ch, side, side, k, 1, 0).expect("fits");
        let (patch, np) = (win.patch(), n * win.positions());
        let x: Vec<f32> = (0..n * win.image()).map(|i| (i % 13) as f32).collect();
        let w: Vec<f32> = (0..out * patch).map(|i| (i % 7) as f32).collect();
        let y: Vec<f32> = (0..out * np).map(|i| (i % 5) as f32).collect();
        let mut cols = Vec::new();
        im2col(&x, n, &win, &mut cols);
        let name = |what: &str| format!("{what} {ch}->{out} k{k} {side}x{side} b{n}");
        let mut buf = Vec::new();
        c.bench_function(&name("im2col"), |b| {
            b.iter(|| im2col(&x, n, &win, &mut buf))
        });
        let mut dst = vec![0.0; out * np];
        c.bench_function(&name("gemm forward"), |b| {
            b.iter(|| {
                let (wm, cm) = (MatRef::new(&w, out, patch), MatRef::new(&cols, patch, np));
                matmul(&mut dst, wm, cm)
            })
        });
        c.bench_function(&name("cnhw<->nchw"), |b| {
            b.iter(|| {
                nchw_to_cnhw(
                    &cnhw_to_nchw(&y, n, out, win.positions(), None),
                    n,
                    out,
                    win.positions(),
                )
            })
        });
        let mut gw = vec![0.0; out * patch];
        c.bench_function(&name("gemm weight grad"), |b| {
            b.iter(|| {
                let (ym, cm) = (MatRef::new(&y, out, np), MatRef::new(&cols, patch, np));
                matmul(&mut gw, ym, cm.t())
            })
        });
        let mut gwt = vec![0.0; patch * out];
        c.bench_function(&name("gemm weight grad, transposed"), |b| {
            b.iter(|| {
                let (cm, ym) = (MatRef::new(&cols, patch, np), MatRef::new(&y, out, np));
                matmul(&mut gwt, cm, ym.t())
            })
        });
        let mut gcols = vec![0.0; patch * np];
        c.bench_function(&name("gemm input grad"), |b| {
            b.iter(|| {
                let (wm, ym) = (MatRef::new(&w, out, patch), MatRef::new(&y, out, np));
                matmul(&mut gcols, wm.t(), ym)
            })
        });
        let mut gx = vec![0.0; x.len()];
        c.bench_function(&name("col2im"), |b| {
            b.iter(|| col2im_add(&gcols, n, &win, &mut gx))
        });
        // What stride-1 convolutions run instead: the lane passes, transposes included.
        let bias = vec![0.1; out];
        let layer = [lanes::ConvLayer {
            win,
            w: &w,
            bias: &bias,
            norm: None,
            epi: Epilogue::default(),
        }];
        c.bench_function(&name("lanes forward"), |b| {
            b.iter(|| lanes::conv_forward(&x, n, &layer, true))
        });
        let (_, saved) = lanes::conv_forward(&x, n, &layer, true);
        c.bench_function(&name("lanes backward"), |b| {
            b.iter(|| lanes::conv_backward(&saved, &y, n, &layer, true))
        });
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
