//! 2-D transposed convolution (PyTorch's `ConvTranspose2d`, square kernel, no output padding).

use super::im2col::{
    MatRef, Window, cnhw_to_nchw, col2im_add, im2col, matmul, nchw_to_cnhw, plane_sums,
};
use super::{Act, OpTape, Param, add_param_grad, check_len, unary_op, values};
use crate::error::{Error, Result};
use dfdx::prelude::HasShape;

/// What a transposed convolution computes, apart from its batch and image size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvTranspose2dGeometry {
    /// Values in the weight (`in x out x k x k`, PyTorch's layout).
    pub fn weight_len(&self) -> usize {
        self.in_channels * self.out_channels * self.kernel * self.kernel
    }

    /// Output side for an input side: `(side - 1) * stride - 2 * padding + kernel`.
    pub fn out_side(&self, side: usize) -> Option<usize> {
        (side.max(1) - 1)
            .checked_mul(self.stride)?
            .checked_add(self.kernel)?
            .checked_sub(self.padding.checked_mul(2)?)
    }

    /// The window of the equivalent convolution over the output image, whose positions are
    /// the input pixels.
    pub fn window(&self, channels: usize, height: usize, width: usize) -> Result<Window> {
        if channels != self.in_channels {
            return Err(Error::Shape(format!(
                "conv_transpose2d expects {} input channels, got {channels}",
                self.in_channels
            )));
        }
        let bad = || {
            Error::Shape(format!(
                "conv_transpose2d kernel {} (stride {}, padding {}) gives no output for a \
                 {height}x{width} input",
                self.kernel, self.stride, self.padding
            ))
        };
        let (oh, ow) = (
            self.out_side(height).ok_or_else(bad)?,
            self.out_side(width).ok_or_else(bad)?,
        );
        let win = Window::new(
            self.out_channels,
            oh,
            ow,
            self.kernel,
            self.stride,
            self.padding,
        )
        .ok_or_else(bad)?;
        if height == 0 || width == 0 || win.out_h != height || win.out_w != width {
            return Err(bad());
        }
        Ok(win)
    }
}

/// Transposed convolution of `x` `(N, in, H, W)` with `weight` `(in, out, k, k)` plus `bias`
/// `(out)`, giving `(N, out, (H-1)s-2p+k, (W-1)s-2p+k)`.
pub fn conv_transpose2d<T: OpTape>(
    x: Act<T>,
    weight: &Param,
    bias: &Param,
    geom: ConvTranspose2dGeometry,
    input_grad: bool,
) -> Result<Act<T>> {
    let (n, c, h, w) = *x.shape();
    let win = geom.window(c, h, w)?;
    check_len("conv_transpose2d weight", weight, geom.weight_len())?;
    check_len("conv_transpose2d bias", bias, geom.out_channels)?;
    let (out_c, positions, patch) = (geom.out_channels, h * w, win.patch());
    if geom.kernel == geom.stride && geom.padding == 0 {
        return Ok(blocks(x, weight, bias, geom, input_grad));
    }

    let np = n * positions;

    // Forward: cols (out*k*k x N*H*W) = weight^T . x as (in x N*H*W), scattered by col2im.
    let xc = nchw_to_cnhw(&values(&x), n, c, positions);
    let wv = weight.shared();
    let mut cols = vec![0.0; patch * np];
    matmul(
        &mut cols,
        MatRef::new(&wv, c, patch).t(),
        MatRef::new(&xc, c, np),
    );
    let mut out = vec![0.0; n * win.image()];
    col2im_add(&cols, n, &win, &mut out);
    let bv = bias.values();
    let plane = win.height * win.width;
    for (i, o) in out.chunks_exact_mut(plane).enumerate() {
        let b = bv[i % out_c];
        o.iter_mut().for_each(|v| *v += b);
    }

    let (weight, bias) = (weight.clone(), bias.clone());
    let dims = (n, out_c, win.height, win.width);
    Ok(unary_op(x, out, dims, move |gy, grads| {
        add_param_grad(grads, &bias, &bias_grad(gy, plane, out_c))?;

        let mut gcols = cols; // reuse the forward buffer
        im2col(gy, n, &win, &mut gcols);
        let gcm = MatRef::new(&gcols, patch, np);
        let mut gw = vec![0.0; c * patch];
        matmul(&mut gw, MatRef::new(&xc, c, np), gcm.t());
        add_param_grad(grads, &weight, &gw)?;

        if !input_grad {
            return Ok(None);
        }
        let mut gxc = xc; // reuse
        matmul(&mut gxc, MatRef::new(&wv, c, patch), gcm);
        Ok(Some(cnhw_to_nchw(&gxc, n, c, positions, None)))
    }))
}

/// The common upsampling case, kernel = stride and no padding: every input pixel writes its own
/// `k x k` block of the output, `out[o, y*k+dy, x*k+dx] = b[o] + sum_c w[c, o, dy, dx] x[c, y, x]`.
/// Plain loops: as a matrix product this has an inner dimension of `in` (often 1).
fn blocks<T: OpTape>(
    x: Act<T>,
    weight: &Param,
    bias: &Param,
    geom: ConvTranspose2dGeometry,
    input_grad: bool,
) -> Act<T> {
    let (n, c, h, w) = *x.shape();
    let (out_c, k) = (geom.out_channels, geom.kernel);
    let (oh, ow) = (h * k, w * k);
    let (xv, wv, bv) = (values(&x), weight.shared(), bias.values());
    // Where weight `(c, o, dy, dx)` is.
    let wi = move |ci: usize, o: usize, dy: usize, dx: usize| ((ci * out_c + o) * k + dy) * k + dx;
    let mut out = vec![0.0; n * out_c * oh * ow];
    for (img, dst) in out.chunks_exact_mut(out_c * oh * ow).enumerate() {
        let xi = &xv[img * c * h * w..][..c * h * w];
        for (o, plane) in dst.chunks_exact_mut(oh * ow).enumerate() {
            plane.fill(bv[o]);
            for ci in 0..c {
                let xc = &xi[ci * h * w..][..h * w];
                // Output row y*k+dy takes input row y through kernel row dy.
                for (r, row) in plane.chunks_exact_mut(ow).enumerate() {
                    let (xr, wr) = (&xc[r / k * w..][..w], &wv[wi(ci, o, r % k, 0)..][..k]);
                    match k {
                        2 => add_blocks::<2>(row, xr, wr),
                        _ => add_blocks_any(row, xr, wr, k),
                    }
                }
            }
        }
    }
    let (weight, bias) = (weight.clone(), bias.clone());
    unary_op(x, out, (n, out_c, oh, ow), move |gy, grads| {
        let mut gw = vec![0.0; wv.len()];
        let mut gx = vec![0.0; if input_grad { xv.len() } else { 0 }];
        for (img, gyi) in gy.chunks_exact(out_c * oh * ow).enumerate() {
            let xi = &xv[img * c * h * w..][..c * h * w];
            for (o, plane) in gyi.chunks_exact(oh * ow).enumerate() {
                for ci in 0..c {
                    let xc = &xi[ci * h * w..][..h * w];
                    let gxc = &mut gx[if input_grad {
                        (img * c + ci) * h * w
                    } else {
                        0
                    }..];
                    for (r, row) in plane.chunks_exact(ow).enumerate() {
                        let (y, at) = (r / k, wi(ci, o, r % k, 0));
                        let (xr, wr) = (&xc[y * w..][..w], &wv[at..][..k]);
                        // Whole-row dot products: no sum waits on the one before it.
                        for (dx, gwk) in gw[at..][..k].iter_mut().enumerate() {
                            let blocks = row.chunks_exact(k).zip(xr);
                            *gwk += blocks.map(|(b, &v)| b[dx] * v).sum::<f32>();
                        }
                        if input_grad {
                            let gxr = &mut gxc[y * w..][..w];
                            for (gxv, block) in gxr.iter_mut().zip(row.chunks_exact(k)) {
                                *gxv += block.iter().zip(wr).map(|(g, wk)| g * wk).sum::<f32>();
                            }
                        }
                    }
                }
            }
        }
        add_param_grad(grads, &bias, &bias_grad(gy, oh * ow, out_c))?;
        add_param_grad(grads, &weight, &gw)?;
        Ok(input_grad.then_some(gx))
    })
}

/// The bias gradient: every output plane's sum (of `plane` values, `out_c` planes an image),
/// added up image after image.
fn bias_grad(gy: &[f32], plane: usize, out_c: usize) -> Vec<f32> {
    let mut gb = vec![0.0; out_c];
    for (i, s) in plane_sums(gy, plane).into_iter().enumerate() {
        gb[i % out_c] += s;
    }
    gb
}

/// `row[x * k + dx] += wr[dx] * xr[x]`: one output row of [`blocks`].
fn add_blocks_any(row: &mut [f32], xr: &[f32], wr: &[f32], k: usize) {
    for (block, &v) in row.chunks_exact_mut(k).zip(xr) {
        for (d, &wk) in block.iter_mut().zip(wr) {
            *d += wk * v;
        }
    }
}

/// [`add_blocks_any`] for a kernel of `K` known when compiling (2, the SHres upsampling's),
/// which the compiler vectorizes.
fn add_blocks<const K: usize>(row: &mut [f32], xr: &[f32], wr: &[f32]) {
    let wr: [f32; K] = wr.try_into().expect("K weights");
    for (block, &v) in row.chunks_exact_mut(K).zip(xr) {
        for (d, wk) in block.iter_mut().zip(wr) {
            *d += wk * v;
        }
    }
}
