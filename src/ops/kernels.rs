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
            let padded = side + 2 * padding;
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

    /// Calls `f(position, patch_index, image_index)` for every in-bounds tap of one image;
    /// taps falling in the zero padding are skipped.
    #[inline]
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (k, s, p) = (self.kernel, self.stride, self.padding as isize);
        for oy in 0..self.out_h {
            for ox in 0..self.out_w {
                let pos = oy * self.out_w + ox;
                for c in 0..self.channels {
                    for ky in 0..k {
                        let y = (oy * s + ky) as isize - p;
                        if y < 0 || y >= self.height as isize {
                            continue;
                        }
                        let row = (c * self.height + y as usize) * self.width;
                        for kx in 0..k {
                            let x = (ox * s + kx) as isize - p;
                            if x < 0 || x >= self.width as isize {
                                continue;
                            }
                            f(pos, (c * k + ky) * k + kx, row + x as usize);
                        }
                    }
                }
            }
        }
    }
}

/// Unfolds `batch` images into `cols`, a `(batch * positions) x patch` row-major matrix.
pub fn im2col(images: &[f32], batch: usize, win: &Window, cols: &mut Vec<f32>) {
    let (patch, positions, image) = (win.patch(), win.positions(), win.image());
    cols.clear();
    cols.resize(batch * positions * patch, 0.0);
    for n in 0..batch {
        let src = &images[n * image..(n + 1) * image];
        let dst = &mut cols[n * positions * patch..(n + 1) * positions * patch];
        win.for_each_tap(|pos, tap, at| dst[pos * patch + tap] = src[at]);
    }
}

/// The adjoint of [`im2col`]: adds every patch value back into its pixel of `images`.
pub fn col2im_add(cols: &[f32], batch: usize, win: &Window, images: &mut [f32]) {
    let (patch, positions, image) = (win.patch(), win.positions(), win.image());
    for n in 0..batch {
        let src = &cols[n * positions * patch..(n + 1) * positions * patch];
        let dst = &mut images[n * image..(n + 1) * image];
        win.for_each_tap(|pos, tap, at| dst[at] += src[pos * patch + tap]);
    }
}

/// Transposes `batch` blocks of `rows x cols` (row-major) into `cols x rows`, adding `bias[col]`
/// when given: turns a `(batch*positions) x channels` gemm result into NCHW and back.
pub fn transpose_blocks(
    src: &[f32],
    batch: usize,
    rows: usize,
    cols: usize,
    bias: Option<&[f32]>,
    dst: &mut [f32],
) {
    let block = rows * cols;
    for n in 0..batch {
        let s = &src[n * block..(n + 1) * block];
        let d = &mut dst[n * block..(n + 1) * block];
        for c in 0..cols {
            let b = bias.map_or(0.0, |b| b[c]);
            for r in 0..rows {
                d[c * rows + r] = s[r * cols + c] + b;
            }
        }
    }
}
