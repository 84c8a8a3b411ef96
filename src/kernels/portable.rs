//! The kernels in plain Rust, for any CPU: the default methods of [`super::Isa`]. The
//! vector kernels compute the same operations in the same order, so these also define what
//! every kernel computes.

use std::mem::MaybeUninit;

use super::{AdamStep, CUT, Epilogue, GradLayout, Grid, Isa, LANES, Norm, Spread};

/// The portable kernel.
pub(crate) struct Portable;

impl Isa for Portable {}

/// [`super::correlate`]: a vector of positions at a time, the taps summed in order from 0
/// with fused multiply-adds (as the vector kernels do).
pub fn correlate(
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    n: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
    co: usize,
) {
    let taps = off.len();
    for (o, wo) in w.chunks_exact(taps).enumerate().take(co) {
        let row = &mut out[o * out_stride..][..n];
        for (p, d) in (0..n).step_by(LANES).zip(row.chunks_exact_mut(LANES)) {
            let mut acc = [0.0f32; LANES];
            for (&wj, &at) in wo.iter().zip(off) {
                for (a, s) in acc.iter_mut().zip(&src[p + at..][..LANES]) {
                    *a = wj.mul_add(*s, *a);
                }
            }
            for (d, a) in d.iter_mut().zip(acc) {
                d.write(a);
            }
        }
    }
}

/// [`super::correlate_grad`]: each lane's sum from 0 over every image and its positions in
/// order, fused, then added to `acc` once (as the vector kernels do).
pub(crate) fn correlate_grad(
    acc: &mut [f32],
    g: &[f32],
    src: &[f32],
    off: &[usize],
    l: GradLayout,
    co: usize,
) {
    let taps = off.len();
    for o in 0..co {
        for (j, &at) in off.iter().enumerate() {
            let mut sum = [0.0f32; LANES];
            for i in 0..l.images {
                let go = &g[i * l.g_image + o * l.g_stride..][..l.n];
                let s = &src[i * l.src_image + at..][..l.n];
                for (gc, sc) in go.chunks_exact(LANES).zip(s.chunks_exact(LANES)) {
                    for k in 0..LANES {
                        sum[k] = gc[k].mul_add(sc[k], sum[k]);
                    }
                }
            }
            let lanes = &mut acc[(o * taps + j) * LANES..][..LANES];
            for (a, s) in lanes.iter_mut().zip(sum) {
                *a += s;
            }
        }
    }
}

/// [`super::gather_strided`].
pub fn gather(
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    len: usize,
    src: &[f32],
    stride: usize,
    m: usize,
) {
    for p in 0..len {
        for (l, v) in dst[p * dst_stride..][..LANES].iter_mut().enumerate() {
            v.write(if l < m { src[l * stride + p] } else { 0.0 });
        }
    }
}

/// [`super::scatter`].
pub fn scatter(dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize, m: usize) {
    for (p, s) in src.chunks_exact(LANES).enumerate() {
        for (l, &v) in s.iter().enumerate().take(m) {
            dst[l * stride + p].write(v);
        }
    }
}

/// [`super::epilogue`] (no bounds to check: slices are indexed safely).
#[inline(always)]
pub fn epilogue(
    epi: Epilogue,
    src: &[f32],
    dims: (usize, usize, usize),
    bias: &[f32],
    norm: Option<Norm>,
    dst: &mut [MaybeUninit<f32>],
    route: &mut [u8],
) {
    // Without a norm, its numbers are never read.
    let none = Norm {
        mean: &[],
        inv_std: &[],
        gamma: &[],
        beta: &[],
    };
    let args = (src, dims, bias, norm.unwrap_or(none), dst, route);
    match (epi.relu, epi.max_pool2, norm.is_some()) {
        (false, false, false) => epilogue_with::<false, false, false>(args),
        (true, false, false) => epilogue_with::<true, false, false>(args),
        (false, true, false) => epilogue_with::<false, true, false>(args),
        (true, true, false) => epilogue_with::<true, true, false>(args),
        (false, false, true) => epilogue_with::<false, false, true>(args),
        (true, false, true) => epilogue_with::<true, false, true>(args),
        (false, true, true) => epilogue_with::<false, true, true>(args),
        (true, true, true) => epilogue_with::<true, true, true>(args),
    }
}

/// One pixel of 16 lanes at `at`.
#[inline(always)]
fn px(v: &[f32], at: usize) -> &[f32; LANES] {
    v[at..at + LANES].try_into().expect("a whole pixel")
}

/// What [`epilogue_with`] works on.
type EpilogueArgs<'a, 'b> = (
    &'a [f32],
    (usize, usize, usize),
    &'a [f32],
    Norm<'a>,
    &'b mut [MaybeUninit<f32>],
    &'b mut [u8],
);

/// The selections are written as plain `if` values, lane by lane, so that they compile to
/// vector compares and blends.
#[inline(always)]
fn epilogue_with<const RELU: bool, const POOL: bool, const NORM: bool>(
    (src, (co, oh, ow), bias, norm, dst, route): EpilogueArgs,
) {
    // Bias, then batch norm as `ops::batch_norm2d` computes it (the same operations).
    // (Per channel, so that the inner loops index nothing.)
    let pre_for = |o: usize| {
        let b = bias[o];
        let (m, s, g, be) = if NORM {
            (norm.mean[o], norm.inv_std[o], norm.gamma[o], norm.beta[o])
        } else {
            (0.0, 0.0, 0.0, 0.0)
        };
        move |v: f32| {
            let v = v + b;
            if NORM { g * ((v - m) * s) + be } else { v }
        }
    };
    // `if` rather than `f32::max`: NaN stays NaN, as in PyTorch's ReLU, so a diverged
    // network shows in its outputs.
    let act = |v: f32| if RELU && v <= 0.0 { 0.0 } else { v };
    if !POOL {
        let plane = oh * ow * LANES;
        let planes = src.chunks_exact(plane).zip(dst.chunks_exact_mut(plane));
        for (o, (s, d)) in planes.enumerate().take(co) {
            let pre = pre_for(o);
            for (d, &s) in d.iter_mut().zip(s) {
                d.write(act(pre(s)));
            }
        }
        return;
    }
    let pixel = |o: usize, y: usize, x: usize| ((o * oh + y) * ow + x) * LANES;
    let mut at = 0;
    for o in 0..co {
        let pre = pre_for(o);
        for py in 0..oh / 2 {
            for qx in 0..ow / 2 {
                let (y, x) = (2 * py, 2 * qx);
                let (p0, p1) = (px(src, pixel(o, y, x)), px(src, pixel(o, y, x + 1)));
                let (p2, p3) = (px(src, pixel(o, y + 1, x)), px(src, pixel(o, y + 1, x + 1)));
                let (mut v, mut from) = ([0.0; LANES], [0u8; LANES]);
                for l in 0..LANES {
                    // The first largest in scan order wins, as the pool layer picks.
                    let (mut best, mut i) = (act(pre(p0[l])), 0);
                    for (k, p) in [(1, p1), (2, p2), (3, p3)] {
                        let c = act(pre(p[l]));
                        i = if c > best { k } else { i };
                        best = if c > best { c } else { best };
                    }
                    v[l] = best;
                    // A ReLU output of 0 passes no gradient.
                    from[l] = if RELU && best <= 0.0 { CUT } else { i };
                }
                for (d, v) in dst[at..at + LANES].iter_mut().zip(v) {
                    d.write(v);
                }
                if !route.is_empty() {
                    route[at..at + LANES].copy_from_slice(&from);
                }
                at += LANES;
            }
        }
    }
}

/// [`super::spread`].
#[inline(always)]
pub fn spread(
    src: &[f32],
    how: Spread,
    (co, oh, ow): (usize, usize, usize),
    grid: Grid,
    gc: &mut [MaybeUninit<f32>],
    gb: &mut [f32],
) {
    let at = |o: usize, y: usize, x: usize| grid.pixel(o, y, x) * LANES;
    let mut i = 0;
    for (o, gb_o) in gb.chunks_exact_mut(LANES).enumerate().take(co) {
        // The group's sum from 0, then added to the bias gradient once, as the AVX-512
        // version does: the same bits on every kernel.
        let mut sum = [0.0f32; LANES];
        let gb = &mut sum;
        if let Spread::Route(route) = how {
            for y in (0..oh / 2).map(|y| 2 * y) {
                for x in (0..ow / 2).map(|x| 2 * x) {
                    let (s, r) = (px(src, i), &route[i..i + LANES]);
                    let window = [
                        at(o, y, x),
                        at(o, y, x + 1),
                        at(o, y + 1, x),
                        at(o, y + 1, x + 1),
                    ];
                    for (which, p) in window.into_iter().enumerate() {
                        let d = &mut gc[p..p + LANES];
                        for l in 0..LANES {
                            d[l].write(if r[l] == which as u8 { s[l] } else { 0.0 });
                        }
                    }
                    for l in 0..LANES {
                        if r[l] != CUT {
                            gb[l] += s[l];
                        }
                    }
                    i += LANES;
                }
            }
            gb_o.iter_mut().zip(sum).for_each(|(b, s)| *b += s);
            continue;
        }
        for y in 0..oh {
            let row = &mut gc[at(o, y, 0)..][..ow * LANES];
            for d in row.chunks_exact_mut(LANES) {
                let s = px(src, i);
                for l in 0..LANES {
                    let v = match how {
                        Spread::Relu(out) if out[i + l] <= 0.0 => 0.0,
                        _ => s[l],
                    };
                    d[l].write(v);
                    gb[l] += v;
                }
                i += LANES;
            }
        }
        gb_o.iter_mut().zip(sum).for_each(|(b, s)| *b += s);
    }
}

/// [`super::adam`]: plain operations, no fusing, so a recompilation for wider vectors gives
/// the same results.
#[inline(always)]
pub fn adam(a: AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (step, b1, b2, weight_decay) = (a.step, a.b1, a.b2, a.weight_decay);
    for (((w, g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
        let g = g + weight_decay * *w;
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        // One square root and one division an element (the bias corrections are folded
        // into two constants).
        let denom = v.sqrt() * a.inv_sqrt_c2 + 1e-8;
        *w -= step * *m / denom;
    }
}
