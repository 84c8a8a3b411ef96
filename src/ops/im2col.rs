//! Plain-slice kernels behind the ops: matrix multiply (on the correlation kernel), im2col /
//! col2im, and their geometry. No tape, no tensors: the ops in the sibling files give
//! these their meaning on dfdx tensors.

use crate::kernels::{correlate_new, round_up};

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

/// `dst = a * b`, `dst` row-major `a.rows x b.cols`.
///
/// Each value is a chain of fused multiply-adds over the inner index, from 0 and in order, run
/// on the correlation kernel ([`correlate_new`]): the same bits on every kernel and machine.
/// (A gemm library blocks the inner dimension by the CPU's cache sizes, so its sums, and every
/// number after them, would follow the machine.) Single-threaded on purpose: parallelism lives
/// at the level of whole rounds.
pub fn matmul(dst: &mut [f32], a: MatRef, b: MatRef) {
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
        dst[..m * n].fill(0.0);
        return;
    }
    // `b` as `k` rows of `ns` values (the slack zero), tap `j` reading row `j`.
    let ns = round_up(n);
    let mut rows = vec![0.0; k * ns];
    for (j, row) in rows.chunks_exact_mut(ns).enumerate() {
        for (p, v) in row[..n].iter_mut().enumerate() {
            *v = b.data[j * b.row_stride + p * b.col_stride];
        }
    }
    let packed;
    let weights: &[f32] = if a.col_stride == 1 && a.row_stride == k {
        &a.data[..m * k]
    } else {
        packed = (0..m * k)
            .map(|i| a.data[(i / k) * a.row_stride + (i % k) * a.col_stride])
            .collect::<Vec<f32>>();
        &packed
    };
    let off: Vec<usize> = (0..k).map(|j| j * ns).collect();
    let out = correlate_new(n, &rows, &off, weights);
    for (d, o) in dst.chunks_exact_mut(n).zip(out.chunks_exact(ns)).take(m) {
        d.copy_from_slice(&o[..n]);
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
/// with one matrix product, and with stride 1 every copy is a contiguous run of a pixel row.
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
/// matrix rows; contiguous copies of a plane each.
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

/// The sum of every `len` values of `v` (the planes of a batch), each summed in order from
/// the first as `Iterator::sum` does, so with the same result; eight planes at a time, so
/// that their chains of additions overlap rather than each waiting on the one before.
pub fn plane_sums(v: &[f32], len: usize) -> Vec<f32> {
    const AT_ONCE: usize = 8;
    if len == 0 {
        return Vec::new();
    }
    let mut sums = Vec::with_capacity(v.len() / len);
    let mut blocks = v.chunks_exact(AT_ONCE * len);
    for block in &mut blocks {
        // -0.0, as `Iterator::sum` starts from.
        let mut acc = [-0.0f32; AT_ONCE];
        for t in 0..len {
            for (j, a) in acc.iter_mut().enumerate() {
                *a += block[j * len + t];
            }
        }
        sums.extend(acc);
    }
    let rest = blocks.remainder().chunks_exact(len);
    sums.extend(rest.map(|p| p.iter().sum::<f32>()));
    sums
}
