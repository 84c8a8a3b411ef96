//! Threads inside a round: a pass splits its outputs (channels, rows) over the threads of the
//! rayon pool it runs in, by [`split`]. Only independent outputs are split, never the terms of
//! one sum, so every value is computed by the same operations in the same order whatever the
//! thread count: a round gives the same bits on 1 thread or 16. In a sweep, the pool is the
//! sweep's: a piece another thread does not take runs on the thread that made it, so rounds
//! running side by side on every core pay only the split itself.

/// Multiply-adds (or their like) below which a piece of work is not split further: about
/// two microseconds at one core's speed, well above the cost of handing a piece over.
pub const MIN_WORK: usize = 1 << 17;

/// What a pass that reads and writes each value once (an epilogue, a gradient spread) counts
/// a value as, in multiply-adds: such passes wait on memory, not arithmetic.
pub const PER_VALUE: usize = 8;

/// How many pieces `items` outputs of `work` multiply-adds in all are split into: one per
/// thread of the current pool, fewer when the pieces would be too small to pay.
pub fn pieces(items: usize, work: usize) -> usize {
    rayon::current_num_threads()
        .min(items)
        .min(work / MIN_WORK)
        .max(1)
}

/// Outputs that can be cut in two at an output: what [`split`] hands out.
pub trait Parts: Send + Sized {
    /// The outputs before `at` and those from `at` on.
    fn cut(self, at: usize) -> (Self, Self);
}

/// Outputs `stride` values apart in one buffer (the last may be shorter).
pub struct Rows<'a, T>(pub &'a mut [T], pub usize);

impl<T: Send> Parts for Rows<'_, T> {
    fn cut(self, at: usize) -> (Self, Self) {
        let Rows(data, stride) = self;
        let (a, b) = data.split_at_mut((at * stride).min(data.len()));
        (Rows(a, stride), Rows(b, stride))
    }
}

/// Nothing to cut: for pieces that write through a [`Disjoint`] buffer.
impl Parts for () {
    fn cut(self, _: usize) -> (Self, Self) {
        ((), ())
    }
}

impl<A: Parts, B: Parts> Parts for (A, B) {
    fn cut(self, at: usize) -> (Self, Self) {
        let ((a0, a1), (b0, b1)) = (self.0.cut(at), self.1.cut(at));
        ((a0, b0), (a1, b1))
    }
}

/// Runs `f(first, count, part)` over `pieces` runs of `items` outputs in parallel, `part` being
/// the outputs from `first` on; the parts are disjoint.
pub fn split<P: Parts>(
    parts: P,
    (first, items): (usize, usize),
    pieces: usize,
    f: &(dyn Fn(usize, usize, P) + Sync),
) {
    if pieces <= 1 || items <= 1 {
        return f(first, items, parts);
    }
    let left = pieces / 2;
    let mid = items * left / pieces;
    let (a, b) = parts.cut(mid);
    rayon::join(
        || split(a, (first, mid), left, f),
        || split(b, (first + mid, items - mid), pieces - left, f),
    );
}

/// The runs of channels that the outputs `first..first + count` of a [`split`] cover when
/// its outputs are `(group, channel)` pairs, `co` channels a group, group after group:
/// `(group, channels, at)`, the group counted from the split's first and `at` the run's
/// first output counted from `first`. Splitting groups of channels this way gives each
/// thread whole groups where it can, so that passes over the same groups one after another
/// find most of their inputs where the same thread wrote them.
pub fn runs(
    first: usize,
    count: usize,
    co: usize,
) -> impl Iterator<Item = (usize, std::ops::Range<usize>, usize)> {
    let (end, mut at) = (first + count, first);
    std::iter::from_fn(move || {
        (at < end && co > 0).then(|| {
            let (g, c) = (at / co, at % co);
            let len = (co - c).min(end - at);
            let run = (g, c..c + len, at - first);
            at += len;
            run
        })
    })
}

/// A buffer whose disjoint places pieces of work write at once, each through slices of its
/// own: for outputs that interleave (a channel's rows in every group of a batch), which
/// [`Rows`] cannot cut apart.
pub struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _buf: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: it hands out `&mut [T]` to other threads, which `T: Send` allows; that no two of
// those overlap is the contract of `slice`.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub fn new(buf: &'a mut [T]) -> Self {
        Disjoint {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: std::marker::PhantomData,
        }
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` values from `at`. Checked in debug builds only: a check in a hot loop kept
    /// it from vectorizing, so callers check their whole range once.
    ///
    /// # Safety
    /// They must lie within the buffer, and no other slice of this buffer that overlaps this
    /// one may be alive while it is.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, at: usize, len: usize) -> &mut [T] {
        debug_assert!(
            at <= self.len && len <= self.len - at,
            "a slice beyond the buffer"
        );
        // SAFETY: within the buffer borrowed for 'a, with no overlap, by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runs of a split over groups of channels cover every `(group, channel)` pair once.
    #[test]
    fn runs_cover_every_group_and_channel_once() {
        for pieces in [1, 2, 3, 7] {
            let (groups, co) = (5, 3);
            let seen = std::sync::Mutex::new(vec![0; groups * co]);
            split((), (0, groups * co), pieces, &|first, count, ()| {
                let mut next = 0;
                for (g, ch, at) in runs(first, count, co) {
                    assert_eq!(at, next, "runs follow each other");
                    next += ch.len();
                    for c in ch {
                        seen.lock().unwrap()[g * co + c] += 1;
                    }
                }
                assert_eq!(next, count, "runs cover the piece");
            });
            assert_eq!(
                seen.into_inner().unwrap(),
                vec![1; groups * co],
                "{pieces} pieces"
            );
        }
    }

    /// Every output is visited once, in its own part, for any number of pieces.
    #[test]
    fn split_visits_every_output_once() {
        for pieces in [1, 2, 3, 7, 16] {
            let mut out = vec![0u32; 10 * 4];
            split(
                Rows(&mut out, 4),
                (0, 10),
                pieces,
                &|first, count, Rows(part, _)| {
                    for i in 0..count {
                        for v in &mut part[i * 4..i * 4 + 4] {
                            *v += (first + i) as u32 + 1;
                        }
                    }
                },
            );
            let want: Vec<u32> = (0..40).map(|i| i / 4 + 1).collect();
            assert_eq!(out, want, "{pieces} pieces");
        }
    }
}
