//! Buffers reused from one training step to the next. The lane layout's buffers are large
//! (a batch-normalized 32-channel layer keeps megabytes per step), and asking the allocator
//! afresh each step returned them to the system and back: every page faulted in and zeroed
//! by the kernel again, a seventh of such a network's time. Each thread keeps the buffers
//! dropped here and hands them out again, best fit first, up to [`KEEP`] bytes.

use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Most bytes of spare buffers one thread keeps: well above one step's needs.
const KEEP: usize = 256 << 20;

/// The spare buffers of this thread and their bytes.
#[derive(Default)]
struct Spare {
    bufs: Vec<Vec<MaybeUninit<f32>>>,
    bytes: usize,
}

thread_local! {
    static SPARE: RefCell<Spare> = RefCell::default();
}

/// A buffer of `len` values, their contents unspecified: a spare one that fits (holding at
/// most twice `len`, so that a small request does not take a large buffer), else a new one.
pub(super) fn take(len: usize) -> Vec<MaybeUninit<f32>> {
    let found = SPARE.with_borrow_mut(|s| {
        let fits = |b: &Vec<MaybeUninit<f32>>| (len..=2 * len).contains(&b.capacity());
        let best = (0..s.bufs.len())
            .filter(|&i| fits(&s.bufs[i]))
            .min_by_key(|&i| s.bufs[i].capacity())?;
        let buf = s.bufs.swap_remove(best);
        s.bytes -= buf.capacity() * 4;
        Some(buf)
    });
    let mut buf = found.unwrap_or_else(|| Vec::with_capacity(len));
    // SAFETY: `MaybeUninit` values need no initialization, and the capacity holds `len`.
    unsafe { buf.set_len(len) };
    buf
}

/// Keeps `buf` for a later [`take`], unless this thread keeps enough already.
pub(super) fn give(buf: Vec<MaybeUninit<f32>>) {
    let bytes = buf.capacity() * 4;
    if bytes == 0 {
        return;
    }
    SPARE.with_borrow_mut(|s| {
        if s.bytes + bytes <= KEEP {
            s.bytes += bytes;
            s.bufs.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer given back is taken again for a request it fits, and not for one it is
    /// more than twice as large as.
    #[test]
    fn buffers_are_reused_when_they_fit() {
        let a = take(1000);
        let ptr = a.as_ptr();
        give(a);
        let b = take(600);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 600));
        give(b);
        let c = take(400);
        assert_ne!(c.as_ptr(), ptr);
        let d = take(1000);
        assert_eq!(d.as_ptr(), ptr);
    }
}
