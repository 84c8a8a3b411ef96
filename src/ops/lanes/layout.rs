//! The image-per-lane layout: groups of [`LANES`] images stored `C x H x W x LANES`, the
//! buffers that hold them (aligned, and written without zeroing where every value is
//! written), and the transposes into and out of it.

use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

use super::spare;
use crate::kernels::{Grid, LANES, as_uninit, gather_strided, scatter};
use crate::par;

/// `f32`s, every one written, starting on a 64-byte boundary (when the allocator allows), so
/// that a pixel of 16 lanes is one cache line: a [`Fresh`] buffer once it is written. Its
/// buffer goes back to this thread's [`spare`] buffers.
#[derive(Debug, Default)]
pub(super) struct Aligned {
    /// Every value initialized.
    buf: Vec<MaybeUninit<f32>>,
    start: usize,
    len: usize,
}

impl Aligned {
    /// Where the aligned values begin in a buffer of `len + LANES`.
    fn start<T>(buf: &[T]) -> usize {
        let start = buf.as_ptr().align_offset(64);
        if start < LANES { start } else { 0 }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.buf));
    }
}

/// Like [`Aligned`], but made without writing anything: written part by part, read only where
/// written, and turned into an [`Aligned`] once every value is.
#[derive(Debug)]
pub(super) struct Fresh {
    buf: Vec<MaybeUninit<f32>>,
    start: usize,
    len: usize,
}

impl Fresh {
    pub(super) fn new(len: usize) -> Self {
        #[allow(unused_mut)]
        let mut buf = spare::take(len + LANES);
        // Debug builds poison the values: reading one before it is written turns a test's
        // numbers NaN instead of passing unnoticed on whatever the buffer held.
        #[cfg(debug_assertions)]
        buf.fill(MaybeUninit::new(f32::NAN));
        let start = Aligned::start(&buf);
        Fresh { buf, start, len }
    }

    /// `len` values from `at`, to write.
    pub(super) fn part_mut(&mut self, at: usize, len: usize) -> &mut [MaybeUninit<f32>] {
        assert!(at + len <= self.len, "Fresh: part out of bounds");
        &mut self.buf[self.start + at..][..len]
    }

    /// How many values it holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every value, for pieces of work on other threads to write their own parts of.
    pub(super) fn disjoint(&mut self) -> par::Disjoint<'_, MaybeUninit<f32>> {
        par::Disjoint::new(&mut self.buf[self.start..][..self.len])
    }

    /// `len` values from `at`, to read.
    ///
    /// # Safety
    /// Every one of them must have been written.
    pub(super) unsafe fn part(&self, at: usize, len: usize) -> &[f32] {
        assert!(at + len <= self.len, "Fresh: part out of bounds");
        let part = &self.buf[self.start + at..][..len];
        // SAFETY: the caller says these values were written; `MaybeUninit<f32>` has `f32`'s
        // layout.
        unsafe { &*(part as *const [MaybeUninit<f32>] as *const [f32]) }
    }

    /// `len` values from `at`, to read and change.
    ///
    /// # Safety
    /// Every one of them must have been written.
    pub(super) unsafe fn written_mut(&mut self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.len, "Fresh: part out of bounds");
        let part = &mut self.buf[self.start + at..][..len];
        // SAFETY: as for `part`.
        unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
    }

    /// The buffer as an [`Aligned`].
    ///
    /// # Safety
    /// Every value must have been written.
    pub(super) unsafe fn into_aligned(mut self) -> Aligned {
        let (start, len) = (self.start, self.len);
        let mut buf = std::mem::take(&mut self.buf);
        let (head, rest) = buf.split_at_mut(start);
        head.iter_mut().chain(&mut rest[len..]).for_each(|v| {
            v.write(0.0);
        });
        Aligned { buf, start, len }
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.buf));
    }
}

impl Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        let v = &self.buf[self.start..self.start + self.len];
        // SAFETY: every value of an `Aligned` is initialized; `MaybeUninit<f32>` has `f32`'s
        // layout.
        unsafe { &*(v as *const [MaybeUninit<f32>] as *const [f32]) }
    }
}

impl DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        let v = &mut self.buf[self.start..self.start + self.len];
        // SAFETY: as for `deref`; only initialized values can be written through it.
        unsafe { &mut *(v as *mut [MaybeUninit<f32>] as *mut [f32]) }
    }
}

/// Groups of [`LANES`] images in a batch of `n`.
pub(super) fn groups(n: usize) -> usize {
    n.div_ceil(LANES)
}

/// Images of group `g` in a batch of `n`.
pub(super) fn in_group(n: usize, g: usize) -> usize {
    (n - g * LANES).min(LANES)
}

/// `C x H x W` images stored with `pad` zeros all round: the planes of one group.
#[derive(Clone, Copy, Debug)]
pub(super) struct Planes {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub pad: usize,
}

impl Planes {
    pub(super) fn hp(&self) -> usize {
        self.h + 2 * self.pad
    }
    pub(super) fn wp(&self) -> usize {
        self.w + 2 * self.pad
    }
    /// Pixels of one padded plane.
    pub(super) fn area(&self) -> usize {
        self.hp() * self.wp()
    }
    /// Values of one group.
    pub(super) fn group(&self) -> usize {
        self.c * self.area() * LANES
    }
    /// Values of one image in NCHW, padding excluded.
    pub(super) fn image(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Offsets of the taps of a `k x k` kernel, in weight order `(c, ky, kx)`.
    pub(super) fn taps(&self, k: usize) -> Vec<usize> {
        let (area, wp) = (self.area(), self.wp());
        (0..self.c)
            .flat_map(|c| (0..k).flat_map(move |ky| (0..k).map(move |kx| (c, ky, kx))))
            .map(|(c, ky, kx)| (c * area + ky * wp + kx) * LANES)
            .collect()
    }
    /// Where image pixel `(c, y, x)` sits in a group, in pixels.
    pub(super) fn pixel(&self, c: usize, y: usize, x: usize) -> usize {
        self.grid().pixel(c, y, x)
    }
    /// The pixel arithmetic of these planes, for the kernels.
    pub(super) fn grid(&self) -> Grid {
        Grid {
            hp: self.hp(),
            wp: self.wp(),
            pad: self.pad,
        }
    }

    /// A plane's pixels as runs contiguous in both layouts: `(runs, pixels a run)`.
    fn runs(&self) -> (usize, usize) {
        if self.pad == 0 {
            (1, self.h * self.w)
        } else {
            (self.h, self.w)
        }
    }

    /// Zeros into the padding of one group `dst`, and nowhere else.
    pub(super) fn zero_padding(&self, dst: &mut [MaybeUninit<f32>]) {
        if self.pad == 0 {
            return;
        }
        // A pixel at a time, each one store: the runs are a few pixels long, too short for
        // a call to memset each to pay.
        let zero = |v: &mut [MaybeUninit<f32>]| {
            for px in v.as_chunks_mut::<LANES>().0 {
                *px = [MaybeUninit::new(0.0); LANES];
            }
        };
        let (row, side) = (self.wp() * LANES, self.pad * LANES);
        for plane in dst.chunks_exact_mut(self.area() * LANES) {
            // Top rows and the first row's left side; each row's right side and the next
            // row's left side; the last row's right side and the bottom rows: contiguous.
            let (head, rest) = plane.split_at_mut(self.pad * row + side);
            zero(head);
            for r in rest.chunks_exact_mut(row).take(self.h - 1) {
                zero(&mut r[row - 2 * side..]);
            }
            let tail = self.pad * row + side;
            let n = plane.len();
            zero(&mut plane[n - tail..]);
        }
    }

    /// Group `g` of the NCHW batch `x` (`n` images) into `dst` (one group; missing images
    /// become zeros, padding is left as it is: without padding, every value is written).
    pub(super) fn enter(&self, x: &[f32], n: usize, g: usize, dst: &mut [MaybeUninit<f32>]) {
        self.enter_channels(x, n, g, 0..self.c, dst)
    }

    /// [`enter`](Self::enter) for `channels` alone, into `dst` holding those.
    pub(super) fn enter_channels(
        &self,
        x: &[f32],
        n: usize,
        g: usize,
        channels: std::ops::Range<usize>,
        dst: &mut [MaybeUninit<f32>],
    ) {
        let (m, image) = (in_group(n, g), self.image());
        let x = &x[g * LANES * image..];
        // Unpadded, a plane is one run of pixels; padded, a row.
        let (runs, len) = self.runs();
        let first = channels.start;
        for c in channels {
            for r in 0..runs {
                let src = &x[(c * self.h) * self.w + r * len..];
                let at = self.pixel(c - first, r, 0) * LANES;
                gather(&mut dst[at..at + len * LANES], src, image, m);
            }
        }
    }

    /// One group of unpadded planes `src` (these planes' channels and sides) into the
    /// inside of `dst`, one group of these: every value but the padding is written.
    pub(super) fn pad_from(&self, src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        let row = self.w * LANES;
        for (r, src) in src.chunks_exact(row).enumerate().take(self.c * self.h) {
            let at = self.pixel(r / self.h, r % self.h, 0) * LANES;
            for (d, &v) in dst[at..at + row].iter_mut().zip(src) {
                d.write(v);
            }
        }
    }

    /// The `m` images of one group from `src` into `x`, their place in an NCHW batch,
    /// padding dropped: every value of those images is written.
    pub(super) fn leave(&self, src: &[f32], m: usize, x: &mut [MaybeUninit<f32>]) {
        let image = self.image();
        let (runs, len) = self.runs();
        for c in 0..self.c {
            for r in 0..runs {
                let dst = &mut x[(c * self.h) * self.w + r * len..];
                let at = self.pixel(c, r, 0) * LANES;
                scatter(dst, &src[at..at + len * LANES], image, m);
            }
        }
    }
}

/// `n` images of `p` from [`Planes::leave`], group by group, `group(g, x)` writing group
/// `g`'s images `x`: the batch, each value written once and never zeroed first.
pub(super) fn leave_all(
    n: usize,
    p: Planes,
    mut group: impl FnMut(usize, &mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let len = n * p.image();
    let mut out = Vec::with_capacity(len);
    for (g, x) in out.spare_capacity_mut()[..len]
        .chunks_mut(LANES * p.image())
        .enumerate()
    {
        group(g, x);
    }
    // SAFETY: the groups' `leave` wrote all `len` values (every image of the batch).
    unsafe { out.set_len(len) };
    out
}

/// [`leave_all`] with the groups split over the threads: `piece(first, groups, x)` writes
/// the images `x` of `groups` groups from group `first` on.
pub(super) fn leave_split<F>(n: usize, p: Planes, pieces: usize, piece: F) -> Vec<f32>
where
    F: Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
{
    let len = n * p.image();
    let mut out = Vec::with_capacity(len);
    let parts = par::Rows(&mut out.spare_capacity_mut()[..len], LANES * p.image());
    par::split(
        parts,
        (0, groups(n)),
        pieces,
        &|first, count, par::Rows(x, _)| piece(first, count, x),
    );
    // SAFETY: the pieces' `leave` wrote all `len` values (every image of the batch).
    unsafe { out.set_len(len) };
    out
}

/// `dst[p * LANES + l] = src[l * stride + p]` for `l < m` and every pixel `p` of `dst`: `m`
/// rows of `src`, `stride` apart, into pixels. Lanes from `m` on are set to 0.
fn gather(dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize, m: usize) {
    gather_strided(dst, LANES, dst.len() / LANES, src, stride, m)
}

/// `dst[c * dst_stride + r] = src[r * cols + c]`: the transpose of the `rows x cols`
/// row-major `src`, its rows as columns of `dst`, whose rows (`dst_stride >= round_up(rows)`
/// apart) are zero from `rows` to `round_up(rows)`. In 16 x 16 blocks (the linear layers'
/// weights: a plain loop stores each value to another cache line).
pub(crate) fn transpose(dst: &mut [f32], dst_stride: usize, src: &[f32], rows: usize, cols: usize) {
    for r0 in (0..rows).step_by(LANES) {
        let m = (rows - r0).min(LANES);
        let dst = as_uninit(&mut dst[r0..]);
        gather_strided(dst, dst_stride, cols, &src[r0 * cols..], cols, m);
    }
}

/// `dst[c * rows + r] = src[r * cols + c]`: the transpose of the `rows x cols` row-major
/// `src`, packed. Whole blocks of 16 rows as [`transpose`] does them, the rest value by value.
pub(crate) fn transpose_packed(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert!(
        dst.len() >= rows * cols && src.len() >= rows * cols,
        "transpose_packed: buffer too short"
    );
    let whole = rows / LANES * LANES;
    for r0 in (0..whole).step_by(LANES) {
        let dst = as_uninit(&mut dst[r0..]);
        gather_strided(dst, rows, cols, &src[r0 * cols..], cols, LANES);
    }
    for r in whole..rows {
        for (c, &v) in src[r * cols..][..cols].iter().enumerate() {
            dst[c * rows + r] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a debug build every value of a fresh buffer is NaN until written.
    #[cfg(debug_assertions)]
    #[test]
    fn fresh_buffers_are_poisoned_in_debug_builds() {
        let mut old = Fresh::new(64);
        old.part_mut(0, 64).fill(MaybeUninit::new(1.0));
        drop(old);
        // The same spare buffer again, its old values poisoned.
        let fresh = Fresh::new(64);
        // SAFETY: a debug build has written NaN to every value.
        let values = unsafe { fresh.part(0, 64) };
        assert!(values.iter().all(|v| v.is_nan()));
    }

    /// The transposes into and out of the lane layout (AVX-512 where the CPU has it) against
    /// their definitions: partial groups, runs shorter and longer than 16 pixels, and nothing
    /// written outside the rows.
    #[test]
    fn transposes_match_their_definitions() {
        for m in [1, 7, 16] {
            for len in [1, 5, 16, 17, 40] {
                let stride = len + 3;
                let src: Vec<f32> = (0..m * stride).map(|i| i as f32 + 0.5).collect();
                let mut px = vec![f32::NAN; len * LANES];
                gather(as_uninit(&mut px), &src, stride, m);
                for p in 0..len {
                    for l in 0..LANES {
                        let want = if l < m { src[l * stride + p] } else { 0.0 };
                        assert_eq!(
                            px[p * LANES + l],
                            want,
                            "gather m {m} len {len} at {p}, {l}"
                        );
                    }
                }
                // As a matrix transpose: `m` rows of `len` into columns, padded to 16.
                let mut t = vec![f32::NAN; len * LANES];
                transpose(&mut t, LANES, &src[..m * len], m, len);
                for (i, v) in t.iter().enumerate() {
                    let (c, r) = (i / LANES, i % LANES);
                    let want = if r < m { src[r * len + c] } else { 0.0 };
                    assert_eq!(*v, want, "transpose m {m} len {len} at {c}, {r}");
                }
                let mut back = vec![MaybeUninit::new(-1.0); m * stride];
                scatter(&mut back, &px, stride, m);
                for (i, v) in back.iter().enumerate() {
                    // SAFETY: every value was initialized above.
                    let v = unsafe { v.assume_init() };
                    let want = if i % stride < len { src[i] } else { -1.0 };
                    assert_eq!(v, want, "scatter m {m} len {len} at {i}");
                }
            }
        }
        // Packed: whole blocks of 16 rows and a rest, every value written.
        for rows in [1, 15, 16, 35, 100] {
            for cols in [1, 5, 16, 21] {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 0.5).collect();
                let mut t = vec![f32::NAN; rows * cols];
                transpose_packed(&mut t, &src, rows, cols);
                for (i, v) in t.iter().enumerate() {
                    let (c, r) = (i / rows, i % rows);
                    let want = src[r * cols + c];
                    assert_eq!(*v, want, "transpose_packed {rows}x{cols} at {c}, {r}");
                }
            }
        }
    }
}
