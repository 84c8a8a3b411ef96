//! The CNN ops: forward values against direct-loop references and hand-checked cases, and
//! every gradient against central finite differences.

use dfdx::prelude::*;
use lesser::ops::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn dev() -> Cpu {
    Cpu::default()
}

fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn act(v: Vec<f32>, dims: Dims4) -> Act<NoneTape> {
    dev().tensor_from_vec(v, dims)
}

fn param(v: Vec<f32>) -> Param {
    Param::new(&dev(), v)
}

/// Direct 7-loop convolution, the definition (PyTorch's cross-correlation).
#[allow(clippy::too_many_arguments)]
fn conv_reference(
    x: &[f32],
    (n, c, h, w): Dims4,
    wt: &[f32],
    b: &[f32],
    o: usize,
    k: usize,
    s: usize,
    p: usize,
) -> (Vec<f32>, Dims4) {
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    let mut out = vec![0.0; n * o * oh * ow];
    for ni in 0..n {
        for oc in 0..o {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = b[oc];
                    for ic in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (y * s + ky) as isize - p as isize;
                                let ix = (xx * s + kx) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                acc += x[((ni * c + ic) * h + iy as usize) * w + ix as usize]
                                    * wt[((oc * c + ic) * k + ky) * k + kx];
                            }
                        }
                    }
                    out[((ni * o + oc) * oh + y) * ow + xx] = acc;
                }
            }
        }
    }
    (out, (n, o, oh, ow))
}

/// Direct transposed convolution: every input pixel scatters `weight * x` into the output.
#[allow(clippy::too_many_arguments)]
fn conv_transpose_reference(
    x: &[f32],
    (n, c, h, w): Dims4,
    wt: &[f32],
    b: &[f32],
    o: usize,
    k: usize,
    s: usize,
    p: usize,
) -> (Vec<f32>, Dims4) {
    let oh = (h - 1) * s + k - 2 * p;
    let ow = (w - 1) * s + k - 2 * p;
    let mut out = vec![0.0; n * o * oh * ow];
    for ni in 0..n {
        for oc in 0..o {
            for v in &mut out[(ni * o + oc) * oh * ow..(ni * o + oc + 1) * oh * ow] {
                *v = b[oc];
            }
            for ic in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        for ky in 0..k {
                            for kx in 0..k {
                                let oy = (y * s + ky) as isize - p as isize;
                                let ox = (xx * s + kx) as isize - p as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                out[((ni * o + oc) * oh + oy as usize) * ow + ox as usize] += x
                                    [((ni * c + ic) * h + y) * w + xx]
                                    * wt[((ic * o + oc) * k + ky) * k + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, (n, o, oh, ow))
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// An op under test: input activation and parameters in, output out, for any tape.
type OpFn = dyn Fn(Act<OwnedTape<f32, Cpu>>, &[Param]) -> Act<OwnedTape<f32, Cpu>>;
type EvalFn = dyn Fn(Act<NoneTape>, &[Param]) -> Act<NoneTape>;

/// Checks the gradients of `L = sum(op(x) * r)` for `x` and every parameter against central
/// finite differences.
fn grad_check(x: Vec<f32>, dims: Dims4, params: Vec<Vec<f32>>, op: &OpFn, eval: &EvalFn) {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let ps: Vec<Param> = params.iter().cloned().map(param).collect();
    let xt = act(x.clone(), dims);
    let y = op(xt.leaky_trace(), &ps);
    let ydims = *y.shape();
    let r = rand_vec(&mut rng, ydims.0 * ydims.1 * ydims.2 * ydims.3);
    let rt = act(r.clone(), ydims);
    let grads = (y * rt).sum::<(), _>().backward();
    let loss = |x: &[f32], ps: &[Param]| -> f64 {
        let y = values(&eval(act(x.to_vec(), dims), ps));
        y.iter().zip(&r).map(|(a, b)| f64::from(*a * *b)).sum()
    };
    let eps = 1e-2f32;
    // Input gradient.
    let gx = grads.get(&xt).as_vec();
    let mut num = Vec::new();
    for i in 0..x.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += eps;
        xm[i] -= eps;
        num.push(((loss(&xp, &ps) - loss(&xm, &ps)) / (2.0 * f64::from(eps))) as f32);
    }
    assert_close(&gx, &num, 2e-2, "input grad");
    // Parameter gradients.
    for (pi, pv) in params.iter().enumerate() {
        let g = ps[pi].grad(&grads);
        let mut num = Vec::new();
        for i in 0..pv.len() {
            let with = |d: f32| {
                let mut ps2 = ps.clone();
                let mut v = pv.clone();
                v[i] += d;
                ps2[pi] = param(v);
                loss(&x, &ps2)
            };
            num.push(((with(eps) - with(-eps)) / (2.0 * f64::from(eps))) as f32);
        }
        assert_close(&g, &num, 2e-2, &format!("param {pi} grad"));
    }
}

#[test]
fn conv2d_forward_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(n, c, h, w, o, k, s, p) in &[
        (2, 1, 5, 5, 3, 3, 1, 0),
        (3, 2, 6, 7, 4, 3, 2, 1),
        (1, 3, 8, 8, 2, 5, 1, 2),
        (2, 6, 6, 6, 16, 3, 1, 0),
        (1, 1, 4, 4, 1, 4, 3, 1),
        // Stride 1 takes the direct (im2col-free) path; the rest im2col and a gemm.
        (3, 1, 7, 9, 1, 3, 1, 1),
        (2, 1, 28, 28, 6, 5, 1, 0),
        (2, 6, 12, 12, 16, 5, 1, 0),
        (2, 7, 5, 6, 9, 3, 1, 1),
        (2, 2, 6, 6, 1, 5, 1, 2),
        (2, 1, 8, 5, 2, 2, 1, 0),
        (1, 1, 28, 28, 1, 7, 1, 3),
        // More images than one group of 16 (the direct path's lanes), the last group partial.
        (20, 2, 7, 6, 3, 3, 1, 1),
        (33, 1, 6, 6, 2, 3, 1, 0),
        // The widths of the batch-normalized network: 32 and 64 channels, padded.
        (18, 32, 14, 14, 32, 3, 1, 1),
        (18, 32, 7, 7, 64, 3, 1, 1),
    ] {
        let x = rand_vec(&mut rng, n * c * h * w);
        let wt = rand_vec(&mut rng, o * c * k * k);
        let b = rand_vec(&mut rng, o);
        let geom = Conv2dGeometry {
            in_channels: c,
            out_channels: o,
            kernel: k,
            stride: s,
            padding: p,
        };
        let y = conv2d(
            act(x.clone(), (n, c, h, w)),
            &param(wt.clone()),
            &param(b.clone()),
            geom,
            true,
        )
        .unwrap();
        let (r, rd) = conv_reference(&x, (n, c, h, w), &wt, &b, o, k, s, p);
        assert_eq!(*y.shape(), rd);
        assert_close(&values(&y), &r, 1e-5, "conv2d");
    }
}

#[test]
fn conv2d_hand_checked() {
    // 1x1x3x3 input 1..9, 2x2 kernel of ones, bias 0.5: sums of each 2x2 block plus 0.5.
    let x = act((1..=9).map(|v| v as f32).collect(), (1, 1, 3, 3));
    let geom = Conv2dGeometry {
        in_channels: 1,
        out_channels: 1,
        kernel: 2,
        stride: 1,
        padding: 0,
    };
    let y = conv2d(x, &param(vec![1.0; 4]), &param(vec![0.5]), geom, true).unwrap();
    assert_eq!(values(&y), vec![12.5, 16.5, 24.5, 28.5]);
}

#[test]
fn conv2d_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for &(n, c, h, w, o, k, s, p) in &[
        (2, 2, 5, 5, 3, 3, 1, 0),
        (2, 2, 6, 5, 2, 3, 2, 1),
        // The direct path: one channel in and out with padding, two in, and more channels
        // than one register block holds (4 outputs forward, 3 x 3 for the weight gradient).
        (2, 1, 6, 5, 1, 3, 1, 1),
        (2, 2, 5, 6, 1, 2, 1, 0),
        (2, 5, 6, 7, 7, 3, 1, 2),
        // More images than one group of 16 lanes, the last group partial.
        (18, 2, 4, 5, 2, 3, 1, 1),
        // 5x5 on 12x12: the input gradient's edge rows take only some kernel rows.
        (1, 2, 12, 12, 9, 5, 1, 0),
    ] {
        let geom = Conv2dGeometry {
            in_channels: c,
            out_channels: o,
            kernel: k,
            stride: s,
            padding: p,
        };
        let x = rand_vec(&mut rng, n * c * h * w);
        let params = vec![rand_vec(&mut rng, o * c * k * k), rand_vec(&mut rng, o)];
        grad_check(
            x,
            (n, c, h, w),
            params,
            &move |x, ps| conv2d(x, &ps[0], &ps[1], geom, true).unwrap(),
            &move |x, ps| conv2d(x, &ps[0], &ps[1], geom, true).unwrap(),
        );
    }
}

/// Gradients of a wide, padded stride-1 convolution (32 and 64 channels, the lane kernels'
/// widest blocks and remainders) against their definitions by direct loops, for the loss
/// `sum(y * r)`: too many parameters for finite differences.
#[test]
fn wide_conv2d_gradients_match_their_definitions() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for &(n, c, h, o, k, p) in &[(18, 32, 7, 64, 3, 1), (17, 32, 9, 32, 3, 1)] {
        let (x, wt) = (
            rand_vec(&mut rng, n * c * h * h),
            rand_vec(&mut rng, o * c * k * k),
        );
        let b = rand_vec(&mut rng, o);
        let geom = Conv2dGeometry {
            in_channels: c,
            out_channels: o,
            kernel: k,
            stride: 1,
            padding: p,
        };
        let xt = act(x.clone(), (n, c, h, h));
        let (wp, bp) = (param(wt.clone()), param(b));
        let y = conv2d(xt.leaky_trace(), &wp, &bp, geom, true).unwrap();
        let oh = h + 2 * p - k + 1;
        let r = rand_vec(&mut rng, n * o * oh * oh);
        let grads = (y * act(r.clone(), (n, o, oh, oh)))
            .sum::<(), _>()
            .backward();
        let (mut gx, mut gw, mut gb) = (
            vec![0.0f64; x.len()],
            vec![0.0f64; wt.len()],
            vec![0.0f64; o],
        );
        for ni in 0..n {
            for oc in 0..o {
                for y in 0..oh {
                    for xx in 0..oh {
                        let g = f64::from(r[((ni * o + oc) * oh + y) * oh + xx]);
                        gb[oc] += g;
                        for ic in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (
                                        (y + ky) as isize - p as isize,
                                        (xx + kx) as isize - p as isize,
                                    );
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= h as isize {
                                        continue;
                                    }
                                    let xi = ((ni * c + ic) * h + iy as usize) * h + ix as usize;
                                    let wi = ((oc * c + ic) * k + ky) * k + kx;
                                    gw[wi] += g * f64::from(x[xi]);
                                    gx[xi] += g * f64::from(wt[wi]);
                                }
                            }
                        }
                    }
                }
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        assert_close(&grads.get(&xt).as_vec(), &f(gx), 1e-4, "wide input grad");
        assert_close(&wp.grad(&grads), &f(gw), 1e-4, "wide weight grad");
        assert_close(&bp.grad(&grads), &f(gb), 1e-4, "wide bias grad");
    }
}

/// `conv2d_fused` against the same layers one after another: forward values equal, and the
/// gradients of `sum(y * r)` the same up to summation order.
#[test]
fn fused_convolution_equals_its_layers() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    // Odd sides too: the pool drops the last row and column (floor mode).
    for &(n, c, h, w, o, k, s, p) in &[
        (2, 1, 14, 14, 6, 3, 1, 0),
        (3, 6, 6, 6, 16, 3, 1, 0),
        (2, 3, 9, 8, 5, 3, 1, 1),
        // Rows of 9 and of 17 pooled outputs: more than one 8- or 16-wide vector step.
        (2, 1, 20, 21, 2, 3, 1, 0),
        (2, 1, 5, 37, 2, 3, 1, 0),
        (2, 2, 9, 9, 3, 3, 2, 1),
        // Two groups of 16 images, the second partial.
        (20, 2, 8, 7, 3, 3, 1, 0),
    ] {
        let geom = Conv2dGeometry {
            in_channels: c,
            out_channels: o,
            kernel: k,
            stride: s,
            padding: p,
        };
        let x = rand_vec(&mut rng, n * c * h * w);
        let (wt, b) = (
            param(rand_vec(&mut rng, o * c * k * k)),
            param(rand_vec(&mut rng, o)),
        );
        // The last case writes the pool before the ReLU, which the compiler folds the same way.
        let cases = [
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (true, true, true),
        ];
        for (relu, max_pool2, pool_first) in cases {
            let epi = Epilogue { relu, max_pool2 };
            let run = |fused: bool| {
                let xt = act(x.clone(), (n, c, h, w));
                if fused {
                    let y = conv2d_fused(xt.leaky_trace(), &wt, &b, geom, epi, true).unwrap();
                    return (xt, y);
                }
                let mut y = conv2d(xt.leaky_trace(), &wt, &b, geom, true).unwrap();
                let pool = |y| pool2d(y, PoolKind::Max, 2, 2).unwrap();
                if max_pool2 && pool_first {
                    y = pool(y);
                }
                if relu {
                    y = activation(y, Activation::Relu);
                }
                if max_pool2 && !pool_first {
                    y = pool(y);
                }
                (xt, y)
            };
            let run = |fused: bool| {
                let (xt, y) = run(fused);
                let out = values(&y);
                let r = act(
                    (0..out.len()).map(|i| (i % 7) as f32 - 3.0).collect(),
                    *y.shape(),
                );
                let grads = (y * r).sum::<(), _>().backward();
                let g = [grads.get(&xt).as_vec(), wt.grad(&grads)];
                (out, g, b.grad(&grads))
            };
            let (fused, layers) = (run(true), run(false));
            let what = format!(
                "{c}->{o} k{k} s{s} {h}x{w} relu {relu} pool {max_pool2} pool first {pool_first}"
            );
            assert_eq!(fused.0, layers.0, "{what}: output");
            assert_close(
                &fused.1[0],
                &layers.1[0],
                1e-5,
                &format!("{what}: input grad"),
            );
            assert_close(
                &fused.1[1],
                &layers.1[1],
                1e-5,
                &format!("{what}: weight grad"),
            );
            assert_close(&fused.2, &layers.2, 1e-5, &format!("{what}: bias grad"));
            assert!(
                fused.2.iter().any(|&v| v != 0.0),
                "{what}: a gradient reached the bias"
            );
        }
    }
}

/// A threshold at 0 with value 0 after a convolution, which the compiler folds into the
/// convolution as a ReLU: the same outputs and the same gradients as the two layers.
#[test]
fn threshold_at_zero_is_the_fused_relu() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (n, c, h, w, o, k) = (18, 1, 9, 9, 2, 3);
    let geom = Conv2dGeometry {
        in_channels: c,
        out_channels: o,
        kernel: k,
        stride: 1,
        padding: 1,
    };
    let x = rand_vec(&mut rng, n * c * h * w);
    let (wt, b) = (
        param(rand_vec(&mut rng, o * c * k * k)),
        param(rand_vec(&mut rng, o)),
    );
    let run = |fused: bool| {
        let xt = act(x.clone(), (n, c, h, w));
        let y = if fused {
            let epi = Epilogue {
                relu: true,
                max_pool2: false,
            };
            conv2d_fused(xt.leaky_trace(), &wt, &b, geom, epi, true).unwrap()
        } else {
            threshold(
                conv2d(xt.leaky_trace(), &wt, &b, geom, true).unwrap(),
                0.0,
                0.0,
            )
        };
        let out = values(&y);
        let r = act(
            (0..out.len()).map(|i| (i % 5) as f32 - 2.0).collect(),
            *y.shape(),
        );
        let grads = (y * r).sum::<(), _>().backward();
        let g = [grads.get(&xt).as_vec(), wt.grad(&grads), b.grad(&grads)];
        (out, g)
    };
    let (fused, layers) = (run(true), run(false));
    assert_eq!(fused.0, layers.0, "output");
    assert!(fused.0.contains(&0.0), "some outputs were cut");
    for (i, (a, b)) in fused.1.iter().zip(&layers.1).enumerate() {
        assert_close(a, b, 1e-5, &format!("gradient {i}"));
    }
}

/// NaN passes through ReLU and threshold, alone and fused into a convolution (as in PyTorch),
/// so a network whose weights went NaN cannot hide it behind finite outputs.
#[test]
fn relu_and_threshold_keep_nan() {
    let x = act(vec![f32::NAN, -1.0, 2.0, -0.0], (1, 1, 2, 2));
    let y = values(&activation(x.clone(), Activation::Relu));
    assert!(y[0].is_nan() && y[1..] == [0.0, 2.0, 0.0], "{y:?}");
    let y = values(&threshold(x, 0.5, -3.0));
    assert!(y[0].is_nan() && y[1..] == [-3.0, 2.0, -3.0], "{y:?}");
    // A NaN weight in a convolution whose ReLU (and pool) are fused into it: 16 images, so
    // the lane layout is used, and one output channel of NaN among finite ones.
    let (n, c, h, w) = (16, 1, 6, 6);
    let geom = Conv2dGeometry {
        in_channels: c,
        out_channels: 2,
        kernel: 3,
        stride: 1,
        padding: 0,
    };
    let mut weights = vec![0.1; 2 * 9];
    weights[0] = f32::NAN;
    let (wt, b) = (param(weights), param(vec![0.0, 0.0]));
    for max_pool2 in [false, true] {
        let epi = Epilogue {
            relu: true,
            max_pool2,
        };
        let xt = act(vec![1.0; n * c * h * w], (n, c, h, w));
        let y = values(&conv2d_fused(xt, &wt, &b, geom, epi, false).unwrap());
        let plane = y.len() / n / 2;
        assert!(y[..plane].iter().all(|v| v.is_nan()), "pool {max_pool2}");
        assert!(
            y[plane..2 * plane].iter().all(|v| v.is_finite()),
            "pool {max_pool2}"
        );
    }
}

#[test]
fn conv_transpose2d_forward_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(n, c, h, w, o, k, s, p) in &[
        (2, 1, 4, 4, 2, 3, 1, 0),
        (1, 2, 3, 5, 3, 4, 2, 1),
        (2, 1, 14, 14, 1, 2, 2, 0),
        (1, 3, 5, 5, 1, 3, 2, 1),
    ] {
        let x = rand_vec(&mut rng, n * c * h * w);
        let wt = rand_vec(&mut rng, c * o * k * k);
        let b = rand_vec(&mut rng, o);
        let geom = ConvTranspose2dGeometry {
            in_channels: c,
            out_channels: o,
            kernel: k,
            stride: s,
            padding: p,
        };
        let y = conv_transpose2d(
            act(x.clone(), (n, c, h, w)),
            &param(wt.clone()),
            &param(b.clone()),
            geom,
            true,
        )
        .unwrap();
        let (r, rd) = conv_transpose_reference(&x, (n, c, h, w), &wt, &b, o, k, s, p);
        assert_eq!(*y.shape(), rd);
        assert_close(&values(&y), &r, 1e-5, "conv_transpose2d");
    }
}

#[test]
fn conv_transpose2d_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // The last: kernel = stride, no padding (the SHres upsampling), which has its own loops.
    for &(n, c, h, w, o, k, s, p) in &[
        (2, 2, 3, 3, 2, 3, 1, 0),
        (1, 2, 3, 4, 2, 4, 2, 1),
        (2, 2, 3, 4, 3, 2, 2, 0),
    ] {
        let geom = ConvTranspose2dGeometry {
            in_channels: c,
            out_channels: o,
            kernel: k,
            stride: s,
            padding: p,
        };
        let x = rand_vec(&mut rng, n * c * h * w);
        let params = vec![rand_vec(&mut rng, c * o * k * k), rand_vec(&mut rng, o)];
        grad_check(
            x,
            (n, c, h, w),
            params,
            &move |x, ps| conv_transpose2d(x, &ps[0], &ps[1], geom, true).unwrap(),
            &move |x, ps| conv_transpose2d(x, &ps[0], &ps[1], geom, true).unwrap(),
        );
    }
}

#[test]
fn pools_hand_checked() {
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let max = pool2d(act(x.clone(), (1, 1, 4, 4)), PoolKind::Max, 2, 2).unwrap();
    assert_eq!(values(&max), vec![5.0, 7.0, 13.0, 15.0]);
    let avg = pool2d(act(x.clone(), (1, 1, 4, 4)), PoolKind::Avg, 2, 2).unwrap();
    assert_eq!(values(&avg), vec![2.5, 4.5, 10.5, 12.5]);
    // Overlapping windows, stride 1, and an odd side (floor mode drops the last column).
    let max = pool2d(act(x[..12].to_vec(), (1, 1, 3, 4)), PoolKind::Max, 3, 1).unwrap();
    assert_eq!(*max.shape(), (1, 1, 1, 2));
    assert_eq!(values(&max), vec![10.0, 11.0]);
}

#[test]
fn pool_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for &(k, s) in &[(2, 2), (3, 1), (2, 3)] {
            // Distinct values spaced apart, so a small nudge never changes a max.
            let mut x: Vec<f32> = (0..2 * 3 * 7 * 7).map(|v| v as f32 * 0.05).collect();
            for i in (1..x.len()).rev() {
                x.swap(i, rng.gen_range(0..=i));
            }
            grad_check(
                x,
                (2, 3, 7, 7),
                vec![],
                &move |x, _| pool2d(x, kind, k, s).unwrap(),
                &move |x, _| pool2d(x, kind, k, s).unwrap(),
            );
        }
    }
}

#[test]
fn linear_forward_and_gradients() {
    // x = [1, 2], W = [[1, 0], [0.5, -1], [2, 3]], b = [0, 1, -1]
    let y = linear(
        act(vec![1.0, 2.0], (1, 2, 1, 1)),
        &param(vec![1.0, 0.0, 0.5, -1.0, 2.0, 3.0]),
        &param(vec![0.0, 1.0, -1.0]),
        3,
        true,
    )
    .unwrap();
    assert_eq!(values(&y), vec![1.0, -0.5, 7.0]);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = rand_vec(&mut rng, 3 * 2 * 2 * 2);
    let params = vec![rand_vec(&mut rng, 4 * 8), rand_vec(&mut rng, 4)];
    grad_check(
        x,
        (3, 2, 2, 2),
        params,
        &|x, ps| linear(x, &ps[0], &ps[1], 4, true).unwrap(),
        &|x, ps| linear(x, &ps[0], &ps[1], 4, true).unwrap(),
    );
    // Sizes that are not whole vectors, more rows than one register block: against the
    // definition, and gradients by finite differences.
    let (n, inf, outf) = (7, 37, 21);
    let (x, wt, b) = (
        rand_vec(&mut rng, n * inf),
        rand_vec(&mut rng, outf * inf),
        rand_vec(&mut rng, outf),
    );
    let y = linear(
        act(x.clone(), (n, inf, 1, 1)),
        &param(wt.clone()),
        &param(b.clone()),
        outf,
        true,
    )
    .unwrap();
    let r: Vec<f32> = (0..n * outf)
        .map(|k| {
            let (p, o) = (k / outf, k % outf);
            b[o] + (0..inf)
                .map(|i| x[p * inf + i] * wt[o * inf + i])
                .sum::<f32>()
        })
        .collect();
    assert_close(&values(&y), &r, 1e-5, "linear");
    let params = vec![rand_vec(&mut rng, 18 * 37), rand_vec(&mut rng, 18)];
    grad_check(
        rand_vec(&mut rng, 5 * 37),
        (5, 37, 1, 1),
        params,
        &|x, ps| linear(x, &ps[0], &ps[1], 18, true).unwrap(),
        &|x, ps| linear(x, &ps[0], &ps[1], 18, true).unwrap(),
    );
}

#[test]
fn threshold_and_upsample() {
    let x = act(vec![-1.0, 0.2, 0.7, 3.0], (1, 1, 2, 2));
    assert_eq!(values(&threshold(x, 0.5, -2.0)), vec![-2.0, -2.0, 0.7, 3.0]);
    let up = upsample_nearest(act(vec![1.0, 2.0, 3.0, 4.0], (1, 1, 2, 2)), 2).unwrap();
    assert_eq!(*up.shape(), (1, 1, 4, 4));
    assert_eq!(
        values(&up),
        vec![
            1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0
        ]
    );
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = rand_vec(&mut rng, 2 * 2 * 3 * 3);
    grad_check(
        x.clone(),
        (2, 2, 3, 3),
        vec![],
        &|x, _| upsample_nearest(x, 3).unwrap(),
        &|x, _| upsample_nearest(x, 3).unwrap(),
    );
    // Keep every value at least 0.05 from the threshold, so nudges never cross it.
    let x: Vec<f32> = x
        .iter()
        .map(|v| if v.abs() < 0.05 { 0.3 } else { *v })
        .collect();
    grad_check(
        x,
        (2, 2, 3, 3),
        vec![],
        &|x, _| threshold(x, 0.0, 0.1),
        &|x, _| threshold(x, 0.0, 0.1),
    );
}

#[test]
fn batch_norm_normalizes_and_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let x: Vec<f32> = rand_vec(&mut rng, 4 * 3 * 2 * 2)
        .iter()
        .map(|v| 3.0 * v + 1.0)
        .collect();
    let state = BatchNormState::new(3, 0.1, 1e-5);
    let y = batch_norm2d(
        act(x.clone(), (4, 3, 2, 2)),
        &param(vec![1.0; 3]),
        &param(vec![0.0; 3]),
        &state,
        true,
    )
    .unwrap();
    let yv = values(&y);
    for ch in 0..3 {
        let vals: Vec<f32> = (0..4)
            .flat_map(|n| yv[(n * 3 + ch) * 4..(n * 3 + ch + 1) * 4].to_vec())
            .collect();
        let mean = vals.iter().sum::<f32>() / 16.0;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 16.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }
    // Running mean moved 10% of the way from 0 to the batch mean.
    assert!(state.mean.borrow().iter().all(|m| m.abs() > 0.0));
    let params = vec![rand_vec(&mut rng, 3), rand_vec(&mut rng, 3)];
    for training in [true, false] {
        let st = BatchNormState::new(3, 0.1, 1e-5);
        grad_check(
            x.clone(),
            (4, 3, 2, 2),
            params.clone(),
            &move |x, ps| batch_norm2d(x, &ps[0], &ps[1], &st, training).unwrap(),
            &move |x, ps| {
                let fresh = BatchNormState::new(3, 0.1, 1e-5);
                batch_norm2d(x, &ps[0], &ps[1], &fresh, training).unwrap()
            },
        );
    }
}

#[test]
fn pair_ops_and_concat() {
    // Two pairs of 2-feature digits: rows d00 d01 d10 d11.
    let d = act(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], (4, 2, 1, 1));
    assert_eq!(
        values(&pair_features(d.clone(), false)),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    );
    assert_eq!(
        values(&pair_features(d.clone(), true)),
        vec![3.0, 4.0, 1.0, 2.0, 7.0, 8.0, 5.0, 6.0]
    );
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    grad_check(
        rand_vec(&mut rng, 8),
        (4, 2, 1, 1),
        vec![],
        &|x, _| pair_features(x, true),
        &|x, _| pair_features(x, true),
    );
    // concat: gradients split back to both inputs.
    let a = act(vec![1.0, 2.0], (2, 1, 1, 1));
    let b = act(vec![3.0, 4.0, 5.0, 6.0], (2, 2, 1, 1));
    let y = concat_features(a.leaky_trace(), b.leaky_trace());
    assert_eq!(values(&y), vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
    let r = act(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3, 1, 1));
    let g = (y * r).sum::<(), _>().backward();
    assert_eq!(g.get(&a).as_vec(), vec![1.0, 4.0]);
    assert_eq!(g.get(&b).as_vec(), vec![2.0, 3.0, 5.0, 6.0]);
}

#[test]
fn cross_entropy_value_and_gradient() {
    // Row 0: logits [0, ln 3] target 1: p = 3/4, loss ln(4/3). Row 1: [2, 2] target 0: ln 2.
    let logits = act(vec![0.0, 3f32.ln(), 2.0, 2.0], (2, 2, 1, 1));
    let loss = cross_entropy(logits.leaky_trace(), &[1u8, 0]);
    let expected = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
    assert!((f64::from(loss.array()) - expected).abs() < 1e-6);
    let g = loss.backward().get(&logits).as_vec();
    // (softmax - onehot) / B
    assert_close(&g, &[0.125, -0.125, -0.25, 0.25], 1e-6, "ce grad");
    assert_eq!(logits_argmax(&logits), vec![1, 0]);
}

#[test]
fn shape_errors_are_reported() {
    let geom = Conv2dGeometry {
        in_channels: 2,
        out_channels: 1,
        kernel: 3,
        stride: 1,
        padding: 0,
    };
    let err = conv2d(
        act(vec![0.0; 9], (1, 1, 3, 3)),
        &param(vec![0.0; 18]),
        &param(vec![0.0]),
        geom,
        true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("2 input channels, got 1"), "{err}");
    let geom = Conv2dGeometry {
        in_channels: 1,
        ..geom
    };
    let err = conv2d(
        act(vec![0.0; 4], (1, 1, 2, 2)),
        &param(vec![0.0; 9]),
        &param(vec![0.0]),
        geom,
        true,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("does not fit a 2x2 input"),
        "{err}"
    );
    let err = pool2d(act(vec![0.0; 4], (1, 1, 2, 2)), PoolKind::Max, 3, 1).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    let err = linear(
        act(vec![0.0; 4], (1, 4, 1, 1)),
        &param(vec![0.0; 6]),
        &param(vec![0.0; 2]),
        2,
        true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected 8"), "{err}");
}

/// Plane sums equal `Iterator::sum` of each plane to the bit: whole blocks of eight planes
/// and a rest, planes of one value and of many, and a plane of negative zeros.
#[test]
fn plane_sums_equal_iterator_sums() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for (planes, len) in [(1, 1), (7, 3), (8, 784), (19, 17), (200, 784)] {
        let mut v: Vec<f32> = (0..planes * len)
            .map(|_| rng.gen_range(-1.0..1.0f32) * 10f32.powi(rng.gen_range(-3..4)))
            .collect();
        v[..len].fill(-0.0);
        let sums = lesser::ops::im2col::plane_sums(&v, len);
        let want: Vec<f32> = v.chunks_exact(len).map(|p| p.iter().sum()).collect();
        assert_eq!(sums.len(), planes);
        for (i, (a, b)) in sums.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{planes} planes of {len}: plane {i}"
            );
        }
    }
}

/// One layer of a test chain: its geometry, whether a batch norm follows, its epilogue.
type ChainSpec = (Conv2dGeometry, bool, Epilogue);

fn geom(i: usize, o: usize, k: usize, padding: usize) -> Conv2dGeometry {
    Conv2dGeometry {
        in_channels: i,
        out_channels: o,
        kernel: k,
        stride: 1,
        padding,
    }
}

fn epi(relu: bool, max_pool2: bool) -> Epilogue {
    Epilogue { relu, max_pool2 }
}

/// A chain's parameters: per layer weight, bias, and a norm's gamma and beta (random, so
/// that they matter) with running statistics (not the fresh ones, so that evaluation's
/// differ from the identity).
fn chain_params(
    rng: &mut ChaCha8Rng,
    chain: &[ChainSpec],
) -> Vec<(Param, Param, Param, Param, BatchNormState)> {
    chain
        .iter()
        .map(|(g, _, _)| {
            let o = g.out_channels;
            let st = BatchNormState::new(o, 0.1, 1e-5);
            *st.mean.borrow_mut() = rand_vec(rng, o);
            *st.var.borrow_mut() = rand_vec(rng, o).iter().map(|v| v + 1.5).collect();
            let gamma = rand_vec(rng, o).iter().map(|v| v + 1.0).collect();
            (
                param(rand_vec(rng, g.weight_len())),
                param(rand_vec(rng, o)),
                param(gamma),
                param(rand_vec(rng, o)),
                st,
            )
        })
        .collect()
}

/// Runs `chain` on `x` as one op (`as_chain`) or as its layers one by one (convolution,
/// batch norm, ReLU, pool): the output, the gradients of `sum(y * r)` (input, then each
/// layer's weight, bias, gamma, beta), and the running statistics after.
#[allow(clippy::type_complexity)]
fn run_chain(
    chain: &[ChainSpec],
    ps: &[(Param, Param, Param, Param, BatchNormState)],
    x: &[f32],
    dims: Dims4,
    training: bool,
    as_chain: bool,
) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let states: Vec<BatchNormState> = ps.iter().map(|p| p.4.clone()).collect();
    let xt = act(x.to_vec(), dims);
    let y = if as_chain {
        let layers: Vec<ChainLayer> = chain
            .iter()
            .zip(ps)
            .zip(&states)
            .map(
                |((&(geom, bn, epi), (weight, bias, gamma, beta, _)), state)| ChainLayer {
                    weight,
                    bias,
                    geom,
                    norm: bn.then_some(ChainNorm {
                        gamma,
                        beta,
                        state,
                        training,
                    }),
                    epi,
                },
            )
            .collect();
        conv2d_chain(xt.leaky_trace(), &layers, true).unwrap()
    } else {
        let mut y = xt.leaky_trace();
        for ((&(g, bn, e), (w, b, gamma, beta, _)), st) in chain.iter().zip(ps).zip(&states) {
            if !bn {
                // Fused as before: the same sums, so the same bits.
                y = conv2d_fused(y, w, b, g, e, true).unwrap();
                continue;
            }
            y = conv2d(y, w, b, g, true).unwrap();
            y = batch_norm2d(y, gamma, beta, st, training).unwrap();
            if e.relu {
                y = activation(y, Activation::Relu);
            }
            if e.max_pool2 {
                y = pool2d(y, PoolKind::Max, 2, 2).unwrap();
            }
        }
        y
    };
    let out = values(&y);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let r = act(rand_vec(&mut rng, out.len()), *y.shape());
    let grads = (y * r).sum::<(), _>().backward();
    let mut g = vec![grads.get(&xt).as_vec()];
    for ((&(_, bn, _), (w, b, gamma, beta, _)), _) in chain.iter().zip(ps).zip(&states) {
        g.push(w.grad(&grads));
        // A bias before a norm has no effect, so its gradient is (close to) 0: not compared.
        g.push(if bn { vec![] } else { b.grad(&grads) });
        if bn {
            g.push(gamma.grad(&grads));
            g.push(beta.grad(&grads));
        }
    }
    let running = states
        .iter()
        .flat_map(|s| [s.mean.borrow().clone(), s.var.borrow().clone()])
        .collect();
    (out, g, running)
}

/// A chain of convolutions run as one op against the same layers one by one: equal outputs,
/// equal input and parameter gradients (bit for bit without a norm; with one, to rounding,
/// its sums being taken in another order), equal running statistics. Two groups of images
/// (the second partial), padded first and later layers, pools and ReLUs between, a
/// ReLU-gated last layer, and batch norms with the batch's statistics and with fixed ones.
#[test]
fn conv_chain_equals_its_layers() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let (n, c, side) = (20, 2, 14);
    let chains: [Vec<ChainSpec>; 4] = [
        vec![
            (geom(2, 3, 3, 1), false, epi(true, false)),
            (geom(3, 4, 3, 0), false, epi(true, true)),
            (geom(4, 5, 2, 0), false, epi(true, false)),
        ],
        vec![
            (geom(2, 3, 3, 0), false, epi(false, true)),
            (geom(3, 2, 3, 1), false, epi(true, false)),
        ],
        // The batch-normalized network's shape, narrower.
        vec![
            (geom(2, 6, 3, 1), true, epi(true, false)),
            (geom(6, 6, 3, 1), true, epi(true, true)),
            (geom(6, 8, 3, 1), true, epi(true, true)),
        ],
        // A norm without ReLU, then a plain layer, then a norm last.
        vec![
            (geom(2, 4, 3, 1), true, epi(false, false)),
            (geom(4, 4, 3, 0), false, epi(true, true)),
            (geom(4, 3, 2, 1), true, epi(false, false)),
        ],
    ];
    for (ci, chain) in chains.iter().enumerate() {
        let x = rand_vec(&mut rng, n * c * side * side);
        let ps = chain_params(&mut rng, chain);
        let normed = chain.iter().any(|l| l.1);
        for training in [true, false] {
            let what = format!("chain {ci} training {training}");
            let dims = (n, c, side, side);
            let chained = run_chain(chain, &ps, &x, dims, training, true);
            let one_by_one = run_chain(chain, &ps, &x, dims, training, false);
            let same = |a: &[f32], b: &[f32], what: &str| {
                if normed {
                    assert_close(a, b, 1e-4, what);
                } else {
                    assert_eq!(a, b, "{what}");
                }
            };
            same(&chained.0, &one_by_one.0, &format!("{what}: output"));
            assert!(chained.0.iter().any(|&v| v != 0.0), "{what}: some output");
            for (i, (a, b)) in chained.1.iter().zip(&one_by_one.1).enumerate() {
                same(a, b, &format!("{what}: gradient {i}"));
                let reached = a.is_empty() || a.iter().any(|&v| v != 0.0);
                assert!(reached, "{what}: gradient {i} reached");
            }
            for (i, (a, b)) in chained.2.iter().zip(&one_by_one.2).enumerate() {
                assert_close(a, b, 1e-6, &format!("{what}: running statistics {i}"));
            }
            if !normed {
                break;
            }
        }
    }
}

/// The gradient test's chain: norms without ReLU or pool, whose kinks finite differences
/// cross (the same layers unfused fail the same check); the epilogues after a norm are
/// checked against the unfused layers in `conv_chain_equals_its_layers`.
fn grad_chain() -> Vec<ChainSpec> {
    vec![
        (geom(1, 2, 3, 1), true, epi(false, false)),
        (geom(2, 3, 3, 1), true, epi(false, false)),
    ]
}

/// Running statistics for [`grad_chain`], not the fresh ones.
fn grad_states() -> Vec<BatchNormState> {
    grad_chain()
        .iter()
        .map(|(g, _, _)| {
            let o = g.out_channels;
            let st = BatchNormState::new(o, 0.1, 1e-5);
            *st.mean.borrow_mut() = (0..o).map(|i| 0.1 * i as f32 - 0.1).collect();
            *st.var.borrow_mut() = (0..o).map(|i| 0.5 + 0.3 * i as f32).collect();
            st
        })
        .collect()
}

/// `chain` as an op takes it, four parameters a layer (weight, bias, gamma, beta).
fn chain_layers<'a>(
    chain: &[ChainSpec],
    ps: &'a [Param],
    states: &'a [BatchNormState],
    training: bool,
) -> Vec<ChainLayer<'a>> {
    chain
        .iter()
        .zip(ps.chunks_exact(4))
        .zip(states)
        .map(|((&(geom, bn, epi), p), state)| ChainLayer {
            weight: &p[0],
            bias: &p[1],
            geom,
            norm: bn.then_some(ChainNorm {
                gamma: &p[2],
                beta: &p[3],
                state,
                training,
            }),
            epi,
        })
        .collect()
}

/// The fused batch-normalized chain's gradients against finite differences, with the
/// batch's statistics and with fixed ones, on a partial group of images.
#[test]
fn conv_chain_with_norms_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let dims = (3, 1, 6, 6);
    let x = rand_vec(&mut rng, 3 * 36);
    let mut params = Vec::new();
    for (g, _, _) in grad_chain() {
        params.push(rand_vec(&mut rng, g.weight_len()));
        params.push(rand_vec(&mut rng, g.out_channels));
        params.push(
            rand_vec(&mut rng, g.out_channels)
                .iter()
                .map(|v| v + 1.5)
                .collect(),
        );
        params.push(rand_vec(&mut rng, g.out_channels));
    }
    for training in [true, false] {
        let op = move |x: Act<OwnedTape<f32, Cpu>>, ps: &[Param]| {
            let states = grad_states();
            let layers = chain_layers(&grad_chain(), ps, &states, training);
            conv2d_chain(x, &layers, true).unwrap()
        };
        let eval = move |x: Act<NoneTape>, ps: &[Param]| {
            let states = grad_states();
            let layers = chain_layers(&grad_chain(), ps, &states, training);
            conv2d_chain(x, &layers, true).unwrap()
        };
        grad_check(x.clone(), dims, params.clone(), &op, &eval);
    }
}
