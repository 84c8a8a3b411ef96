//! Plain-slice kernels behind the ops: matrix multiply (the `gemm` crate, dfdx's own engine),
//! im2col / col2im, and their geometry. No tape, no tensors: the ops in the sibling files give
//! these their meaning on dfdx tensors.

use gemm::{Parallelism, gemm};

/// A read-only matrix view with arbitrary strides, so transposes cost nothing.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = a * b` (or `dst += a * b` when `accumulate`), `dst` row-major `a.rows x b.cols`.
///
/// Single-threaded on purpose: parallelism lives at the level of whole rounds, which keeps every
/// number independent of the thread count.
pub fn matmul(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "matmul: inner dimensions differ");
    assert!(
        dst.len() >= m * n && a.fits() && b.fits(),
        "matmul: view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the asserts above keep every index gemm touches inside the three slices, and
    // `dst` is borrowed mutably so it cannot alias `a` or `b`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Where a square `kernel` slides over a `channels x height x width` image with `stride` and
/// zero `padding`: `out_h x out_w` positions, each reading a `channels x kernel x kernel` patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Window {
    /// The window, or `None` when the kernel does not fit the padded image or stride is 0.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Option<Self> {
        let span = |side: usize| {
            let padded = padding.checked_mul(2)?.checked_add(side)?;
            (kernel > 0 && stride > 0 && padded >= kernel).then(|| (padded - kernel) / stride + 1)
        };
        Some(Window {
            channels,
            height,
            width,
            kernel,
            stride,
            padding,
            out_h: span(height)?,
            out_w: span(width)?,
        })
    }

    /// Values in one patch (`channels * kernel^2`).
    pub fn patch(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Number of positions (`out_h * out_w`).
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Values in one image (`channels * height * width`).
    pub fn image(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// For output row `oy` and kernel row `ky`, the input row read, if inside the image.
    #[inline]
    fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.padding)
            .filter(|&y| y < self.height)
    }

    /// For kernel column `kx`, the output columns `lo..hi` whose input column is inside the
    /// image; output column `ox` reads input column `ox * stride + kx - padding`.
    #[inline]
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = p.saturating_sub(kx).div_ceil(s);
        // Largest ox with ox*s + kx - p <= width - 1.
        let hi = (self.width + p)
            .checked_sub(kx + 1)
            .map_or(0, |m| (m / s + 1).min(self.out_w));
        (lo.min(hi), hi)
    }
}

/// Calls `f(col, pixel, len)` for every run of taps that read inside the images: `len` values
/// at `cols[col..]` (step 1) correspond to `images[pixel..]` (step `stride`), where `cols` is
/// the `patch x (batch * positions)` matrix of [`im2col`]. Taps in the padding are skipped.
fn for_each_run(win: &Window, batch: usize, mut f: impl FnMut(usize, usize, usize)) {
    let (k, positions, image) = (win.kernel, win.positions(), win.image());
    let np = batch * positions;
    for row in 0..win.patch() {
        let (c, ky, kx) = (row / (k * k), (row / k) % k, row % k);
        let (lo, hi) = win.valid_cols(kx);
        if lo >= hi {
            continue;
        }
        for n in 0..batch {
            for oy in 0..win.out_h {
                let Some(y) = win.in_row(oy, ky) else {
                    continue;
                };
                let col = row * np + n * positions + oy * win.out_w + lo;
                let x0 = lo * win.stride + kx - win.padding;
                let pixel = n * image + (c * win.height + y) * win.width + x0;
                f(col, pixel, hi - lo);
            }
        }
    }
}

/// Unfolds `batch` images into `cols`, a `patch x (batch * positions)` row-major matrix: row
/// `(c, ky, kx)` holds that tap for every position of every image, so a whole batch convolves
/// with one gemm, and with stride 1 every copy is a contiguous run of a pixel row.
pub fn im2col(images: &[f32], batch: usize, win: &Window, cols: &mut Vec<f32>) {
    cols.clear();
    cols.resize(win.patch() * batch * win.positions(), 0.0);
    let s = win.stride;
    for_each_run(win, batch, |col, pixel, len| {
        let dst = &mut cols[col..col + len];
        if s == 1 {
            dst.copy_from_slice(&images[pixel..pixel + len]);
        } else {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = images[pixel + i * s];
            }
        }
    });
}

/// The adjoint of [`im2col`]: adds every tap of `cols` back into its pixel of `images`.
pub fn col2im_add(cols: &[f32], batch: usize, win: &Window, images: &mut [f32]) {
    let s = win.stride;
    for_each_run(win, batch, |col, pixel, len| {
        let src = &cols[col..col + len];
        if s == 1 {
            for (d, v) in images[pixel..pixel + len].iter_mut().zip(src) {
                *d += v;
            }
        } else {
            for (i, v) in src.iter().enumerate() {
                images[pixel + i * s] += v;
            }
        }
    });
}

/// NCHW `(batch, channels, plane)` to CNHW `(channels, batch, plane)`, so that channels are
/// gemm rows; contiguous copies of a plane each.
pub fn nchw_to_cnhw(src: &[f32], batch: usize, channels: usize, plane: usize) -> Vec<f32> {
    let mut dst = Vec::with_capacity(src.len());
    for c in 0..channels {
        for n in 0..batch {
            dst.extend_from_slice(&src[(n * channels + c) * plane..][..plane]);
        }
    }
    dst
}

/// CNHW `(channels, batch, plane)` back to NCHW, adding `bias[c]` when given.
pub fn cnhw_to_nchw(
    src: &[f32],
    batch: usize,
    channels: usize,
    plane: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut dst = Vec::with_capacity(src.len());
    for n in 0..batch {
        for c in 0..channels {
            let run = &src[(c * batch + n) * plane..][..plane];
            match bias {
                Some(b) => dst.extend(run.iter().map(|v| v + b[c])),
                None => dst.extend_from_slice(run),
            }
        }
    }
    dst
}

/// The direct convolution's view of a stride-1 window, for layers with so few channels that a
/// gemm's tiles stay mostly empty (a 1 -> 1 smoothing convolution is a matrix-vector product):
/// images are zero-padded to `hp x wp`, and each output plane is computed "wide", `out_h` rows
/// of `wp` values of which the first `out_w` are real, so that every kernel row is one long
/// contiguous loop over `span` values.
struct Wide {
    hp: usize,
    wp: usize,
    span: usize,
}

impl Wide {
    fn new(win: &Window) -> Self {
        let wp = win.width + 2 * win.padding;
        Wide {
            hp: win.height + 2 * win.padding,
            wp,
            span: (win.out_h - 1) * wp + win.out_w,
        }
    }

    /// Offset of tap `(c, ky, kx)` in a padded image.
    fn tap(&self, c: usize, ky: usize, kx: usize) -> usize {
        (c * self.hp + ky) * self.wp + kx
    }

    /// Copies one `C x H x W` image into the zero-padded buffer `dst`.
    fn pad(&self, win: &Window, src: &[f32], dst: &mut Vec<f32>) {
        dst.clear();
        dst.resize(win.channels * self.hp * self.wp, 0.0);
        for c in 0..win.channels {
            for y in 0..win.height {
                let at = self.tap(c, y + win.padding, win.padding);
                dst[at..at + win.width]
                    .copy_from_slice(&src[(c * win.height + y) * win.width..][..win.width]);
            }
        }
    }
}

/// `dst[i] += sum_j w[j] * src[i + j]` over one kernel row of `K` taps, tap by tap in order.
#[inline(always)]
fn row_axpy<const K: usize>(dst: &mut [f32], w: &[f32], src: &[f32]) {
    let w: [f32; K] = w[..K].try_into().expect("K taps");
    let src = &src[..dst.len() + K - 1];
    for (i, d) in dst.iter_mut().enumerate() {
        let mut acc = *d;
        for j in 0..K {
            acc += w[j] * src[i + j];
        }
        *d = acc;
    }
}

/// `out[j] += sum_i g[i] * src[i + j]` for the `K` taps of one kernel row, in a fixed order
/// (32 lanes, then the lanes in order, then the tail).
#[inline(always)]
fn row_dot<const K: usize>(g: &[f32], src: &[f32], out: &mut [f32]) {
    let n = g.len();
    let body = n / 32 * 32;
    for j in 0..K {
        let s = &src[j..j + n];
        let mut lanes = [0.0f32; 32];
        for (gc, sc) in g[..body].chunks_exact(32).zip(s[..body].chunks_exact(32)) {
            for l in 0..32 {
                lanes[l] += gc[l] * sc[l];
            }
        }
        let mut sum = 0.0;
        for l in lanes {
            sum += l;
        }
        for (a, b) in g[body..].iter().zip(&s[body..]) {
            sum += a * b;
        }
        out[j] += sum;
    }
}

/// `dst[i + j] += w[j] * g[i]` for the `K` taps of one kernel row.
#[inline(always)]
fn row_scatter<const K: usize>(dst: &mut [f32], w: &[f32], g: &[f32]) {
    for (j, &wj) in w[..K].iter().enumerate() {
        for (d, s) in dst[j..j + g.len()].iter_mut().zip(g) {
            *d += wj * s;
        }
    }
}

/// Widest kernel the direct convolution handles.
pub const DIRECT_MAX_KERNEL: usize = 7;

/// One direct convolution pass over a batch: the forward pass when `gy` is empty (writing
/// `out`), else the backward pass (adding into `gw`, and into `gx` when given).
struct DirectPass<'a> {
    x: &'a [f32],
    gy: &'a [f32],
    batch: usize,
    win: &'a Window,
    w: &'a [f32],
    bias: &'a [f32],
    out_c: usize,
    out: &'a mut [f32],
    gw: &'a mut [f32],
    gx: Option<&'a mut [f32]>,
}

#[inline(always)]
fn direct_pass<const K: usize>(p: DirectPass) {
    let DirectPass {
        x,
        gy,
        batch,
        win,
        w,
        bias,
        out_c,
        out,
        gw,
        mut gx,
    } = p;
    let wide = Wide::new(win);
    let (plane, patch) = (win.out_h * win.out_w, win.patch());
    let (mut xpad, mut wide_buf) = (Vec::new(), vec![0.0; wide.span]);
    let mut gxpad = vec![
        0.0;
        if gx.is_some() {
            win.channels * wide.hp * wide.wp
        } else {
            0
        }
    ];
    for n in 0..batch {
        wide.pad(win, &x[n * win.image()..][..win.image()], &mut xpad);
        gxpad.fill(0.0);
        for o in 0..out_c {
            let wo = &w[o * patch..(o + 1) * patch];
            let at = (n * out_c + o) * plane;
            if gy.is_empty() {
                // Forward: accumulate every tap into the wide row, then keep the real columns.
                wide_buf.fill(bias[o]);
                for c in 0..win.channels {
                    for ky in 0..K {
                        let src = &xpad[wide.tap(c, ky, 0)..];
                        row_axpy::<K>(&mut wide_buf, &wo[(c * K + ky) * K..], src);
                    }
                }
                for (row, d) in out[at..at + plane].chunks_exact_mut(win.out_w).enumerate() {
                    d.copy_from_slice(&wide_buf[row * wide.wp..][..win.out_w]);
                }
            } else {
                // Backward: the output gradient spread wide, zeros in the unused columns.
                wide_buf.fill(0.0);
                for (row, g) in gy[at..at + plane].chunks_exact(win.out_w).enumerate() {
                    wide_buf[row * wide.wp..][..win.out_w].copy_from_slice(g);
                }
                let gwo = &mut gw[o * patch..(o + 1) * patch];
                for c in 0..win.channels {
                    for ky in 0..K {
                        let (taps, tap) = ((c * K + ky) * K, wide.tap(c, ky, 0));
                        row_dot::<K>(&wide_buf, &xpad[tap..], &mut gwo[taps..taps + K]);
                        if gx.is_some() {
                            row_scatter::<K>(&mut gxpad[tap..], &wo[taps..taps + K], &wide_buf);
                        }
                    }
                }
            }
        }
        if let Some(gx) = gx.as_deref_mut() {
            // Crop the padding off the padded gradient.
            let gxi = &mut gx[n * win.image()..][..win.image()];
            for c in 0..win.channels {
                for y in 0..win.height {
                    let at = wide.tap(c, y + win.padding, win.padding);
                    gxi[(c * win.height + y) * win.width..][..win.width]
                        .copy_from_slice(&gxpad[at..at + win.width]);
                }
            }
        }
    }
}

/// Runs [`direct_pass`] for the kernel width, compiled for AVX2 when the CPU has it (the crate
/// is built for baseline x86-64). The same operations in the same order either way, so the same
/// numbers: Rust never fuses `a * b + c` on its own.
fn direct_dispatch(p: DirectPass) {
    macro_rules! widths {
        ($($k:literal)*) => {
            match p.win.kernel {
                $($k => {
                    #[cfg(target_arch = "x86_64")]
                    {
                        #[target_feature(enable = "avx2")]
                        unsafe fn avx2(p: DirectPass) {
                            direct_pass::<$k>(p)
                        }
                        if std::arch::is_x86_feature_detected!("avx2") {
                            // SAFETY: AVX2 was just detected on this CPU.
                            return unsafe { avx2(p) };
                        }
                    }
                    direct_pass::<$k>(p)
                })*
                k => unreachable!("direct convolution chosen for kernel {k}"),
            }
        };
    }
    widths!(1 2 3 4 5 6 7)
}

/// Direct stride-1 convolution of `batch` images: returns `batch x out x OH x OW`.
pub fn direct_conv_forward(
    x: &[f32],
    batch: usize,
    win: &Window,
    w: &[f32],
    bias: &[f32],
    out_c: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; batch * out_c * win.positions()];
    direct_dispatch(DirectPass {
        x,
        gy: &[],
        batch,
        win,
        w,
        bias,
        out_c,
        out: &mut out,
        gw: &mut [],
        gx: None,
    });
    out
}

/// Gradients of [`direct_conv_forward`]: `(weight grad, bias grad, input grad if asked)`.
pub fn direct_conv_backward(
    x: &[f32],
    gy: &[f32],
    batch: usize,
    win: &Window,
    w: &[f32],
    out_c: usize,
    input_grad: bool,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let mut gw = vec![0.0; w.len()];
    let mut gx = input_grad.then(|| vec![0.0; x.len()]);
    direct_dispatch(DirectPass {
        x,
        gy,
        batch,
        win,
        w,
        bias: &[],
        out_c,
        out: &mut [],
        gw: &mut gw,
        gx: gx.as_deref_mut(),
    });
    let plane = win.positions();
    let mut gb = vec![0.0; out_c];
    for (i, g) in gy.chunks_exact(plane).enumerate() {
        gb[i % out_c] += g.iter().sum::<f32>();
    }
    (gw, gb, gx)
}
