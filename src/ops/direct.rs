//! Register-blocked correlation kernels for AVX-512 and AVX2 + FMA: what stride-1
//! convolutions ([`super::lanes`]) and linear layers ([`super::linear`]) run on.
//!
//! Both kernels are 1-D: the forward one computes `out[o][p] = sum_j w[o][j] * src[p + off[j]]`
//! over a run of positions `p`, several output channels and several vectors of positions at a
//! time held in registers, the taps `j` streamed past them; the weight-gradient one the
//! matching sums over positions. A caller makes its problem 1-D by its choice of layout and
//! offsets.
//!
//! Lengths are rounded up to [`LANES`]: callers size buffers with [`round_up`] and keep the
//! slack zero (see each function for what it reads). Without AVX2 and FMA the same loops run
//! in plain Rust. Every implementation computes each value with the same operations in the
//! same order (fused multiply-adds, sums from 0 in a fixed order), so all give the same bits
//! and a report does not depend on the machine that made it.

use std::mem::MaybeUninit;

/// Values per AVX-512 register (two AVX2 registers); every length is processed in whole
/// multiples of it.
pub const LANES: usize = 16;

/// `n` rounded up to a multiple of [`LANES`].
pub fn round_up(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// The largest of `off`, which must be ascending (as [`Wide`] builds them): its last. Checked
/// in debug builds only; the kernels run once per image, and a scan per call showed in
/// profiles.
fn last_offset(off: &[usize]) -> usize {
    debug_assert!(off.windows(2).all(|w| w[0] <= w[1]), "offsets ascend");
    off.last().copied().unwrap_or(0)
}

/// An implementation of the two kernels below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, for any CPU.
    Portable,
    /// AVX2 + FMA (x86-64 from 2013 on).
    Avx2,
    /// AVX-512F.
    Avx512,
}

impl Kernel {
    /// The implementation every op runs: the one `LESSER_KERNEL` names (`portable`, `avx2` or
    /// `avx512`), else the fastest this CPU runs. All give the same bits, so this changes
    /// speed only. An unusable `LESSER_KERNEL` is reported by [`Kernel::from_env`]; here it
    /// falls back to the fastest.
    pub fn active() -> Kernel {
        use std::sync::OnceLock;
        static ACTIVE: OnceLock<Kernel> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            Kernel::from_env()
                .ok()
                .flatten()
                .unwrap_or_else(Kernel::best)
        })
    }

    /// The kernel `LESSER_KERNEL` names, `None` when it is unset or empty, or why it cannot
    /// be used (an unknown name, or one this CPU lacks).
    pub fn from_env() -> Result<Option<Kernel>, String> {
        let Ok(name) = std::env::var("LESSER_KERNEL") else {
            return Ok(None);
        };
        if name.is_empty() {
            return Ok(None);
        }
        let kernel = Kernel::parse(&name).ok_or_else(|| {
            format!("LESSER_KERNEL={name}: unknown kernel; use portable, avx2 or avx512")
        })?;
        if !Kernel::available().contains(&kernel) {
            let have: Vec<&str> = Kernel::available().iter().map(|k| k.name()).collect();
            return Err(format!(
                "LESSER_KERNEL={name}: this CPU lacks it; it runs {}",
                have.join(", ")
            ));
        }
        Ok(Some(kernel))
    }

    /// The kernel called `name` (as `LESSER_KERNEL` spells it).
    pub fn parse(name: &str) -> Option<Kernel> {
        [Kernel::Portable, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The name `LESSER_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// The fastest this CPU runs.
    pub fn best() -> Kernel {
        *Kernel::available().last().unwrap_or(&Kernel::Portable)
    }

    /// Every implementation this CPU can run, slowest first (detected once).
    pub fn available() -> &'static [Kernel] {
        use std::sync::OnceLock;
        static AVAILABLE: OnceLock<Vec<Kernel>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut all = vec![Kernel::Portable];
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") && has!("fma") {
                    all.push(Kernel::Avx2);
                }
                // The AVX-512 build also compiles the epilogue for AVX2.
                if has!("avx512f") && has!("avx2") && has!("fma") {
                    all.push(Kernel::Avx512);
                }
            }
            all
        })
    }
}

/// Forward correlation: `out[o * out_stride + p] = sum_j w[o * taps + j] * src[p + off[j]]`
/// for every output channel `o < w.len() / taps` and `p < round_up(len)`, `taps = off.len()`;
/// `off` ascending. Writes those values and nothing else, without reading `out`.
///
/// Reads `src` up to `round_up(len) - 1 + max(off)`.
///
/// # Panics
/// When a buffer is shorter than that (a bug in the caller, not bad input).
pub fn correlate(
    out: &mut [f32],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
) {
    correlate_with(Kernel::active(), out, out_stride, len, src, off, w)
}

/// [`correlate`] into a new vector, `co` rows of `round_up(len)` values: every value is
/// written once (a buffer zeroed first would be written twice).
pub fn correlate_new(len: usize, src: &[f32], off: &[usize], w: &[f32]) -> Vec<f32> {
    let (taps, n) = (off.len(), round_up(len));
    let total = w.len().checked_div(taps).unwrap_or(0) * n;
    let mut out = Vec::with_capacity(total);
    correlate_into(
        Kernel::active(),
        &mut out.spare_capacity_mut()[..total],
        n,
        len,
        src,
        off,
        w,
    );
    // SAFETY: `correlate_into` wrote `out[o * n + p]` for every channel `o` and `p < n`: all
    // `total` values.
    unsafe { out.set_len(total) };
    out
}

/// [`correlate`] with a chosen implementation, which this CPU must support.
pub fn correlate_with(
    kernel: Kernel,
    out: &mut [f32],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
) {
    correlate_into(kernel, as_uninit(out), out_stride, len, src, off, w)
}

/// `v` as memory to write, for the functions here that write only initialized values (so
/// that `v` stays initialized) and read none.
pub(crate) fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the callers write only initialized
    // values through it.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// [`correlate_with`] into memory that need not be initialized.
fn correlate_into(
    kernel: Kernel,
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
) {
    let (taps, n) = (off.len(), round_up(len));
    if taps == 0 || n == 0 || w.is_empty() {
        return;
    }
    let co = w.len() / taps;
    let max_off = last_offset(off);
    assert!(
        w.len() == co * taps
            && out_stride >= n
            && out.len() >= (co.max(1) - 1) * out_stride + n
            && src.len() >= n + max_off,
        "correlate: buffer too short"
    );
    assert!(
        Kernel::available().contains(&kernel),
        "{kernel:?} unsupported"
    );
    match kernel {
        // SAFETY: the CPU has the features, and the asserts above bound every access.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { simd::correlate_avx512(out, out_stride, n, src, off, w, co) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { simd::correlate_avx2(out, out_stride, n, src, off, w, co) },
        _ => {
            // A vector of positions at a time, the taps summed in order from 0 with fused
            // multiply-adds: the vector kernels' operations, so the same bits.
            for (o, wo) in w.chunks_exact(taps).enumerate() {
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
    }
}

/// What a weight-gradient pass reads: `images` images, image `i`'s wide output gradient at
/// `g[i * g_image..]` (channels `g_stride` apart, `len` positions each) and its padded input
/// at `src[i * src_image..]`.
#[derive(Clone, Copy, Debug)]
pub struct GradInput<'a> {
    pub g: &'a [f32],
    pub g_stride: usize,
    pub g_image: usize,
    pub src: &'a [f32],
    pub src_image: usize,
    pub images: usize,
    pub len: usize,
}

/// The strides of a [`GradInput`], with `len` rounded up: what the vector kernels need.
#[derive(Clone, Copy, Debug)]
struct GradLayout {
    g_stride: usize,
    g_image: usize,
    src_image: usize,
    images: usize,
    n: usize,
}

/// Weight-gradient correlation, per lane: for every output channel `o`, tap `j` and lane `l`,
/// `acc[(o * taps + j) * LANES + l] += sum g[o * g_stride + p] * src[p + off[j]]` (`off`
/// ascending) over every image and the positions `p < round_up(len)` with `p % LANES == l`,
/// each lane's sum formed from 0 in order (images, then positions) with fused multiply-adds
/// and then added to `acc`, by every implementation alike. [`reduce_lanes`] turns `acc` into gradients. Several images per call keep
/// each block's accumulators in registers across them, which matters when an image is only a
/// few vectors long.
///
/// Reads image `i`'s `g` up to `(co - 1) * g_stride + round_up(len) - 1` and its `src` up to
/// `round_up(len) - 1 + max(off)`.
///
/// # Panics
/// When a buffer is shorter than that (a bug in the caller, not bad input).
pub fn correlate_grad(acc: &mut [f32], input: GradInput, off: &[usize]) {
    correlate_grad_with(Kernel::active(), acc, input, off)
}

/// [`correlate_grad`] with a chosen implementation, which this CPU must support.
pub fn correlate_grad_with(kernel: Kernel, acc: &mut [f32], input: GradInput, off: &[usize]) {
    let GradInput {
        g,
        g_stride,
        g_image,
        src,
        src_image,
        images,
        len,
    } = input;
    let (taps, n) = (off.len(), round_up(len));
    if taps == 0 || n == 0 || images == 0 {
        return;
    }
    let co = acc.len() / (taps * LANES);
    let max_off = last_offset(off);
    assert!(
        acc.len() == co * taps * LANES
            && g.len() >= (images - 1) * g_image + (co.max(1) - 1) * g_stride + n
            && src.len() >= (images - 1) * src_image + n + max_off,
        "correlate_grad: buffer too short"
    );
    assert!(
        Kernel::available().contains(&kernel),
        "{kernel:?} unsupported"
    );
    let layout = GradLayout {
        g_stride,
        g_image,
        src_image,
        images,
        n,
    };
    match kernel {
        // SAFETY: the CPU has the features, and the asserts above bound every access.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { simd::correlate_grad_avx512(acc, g, src, off, layout, co) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { simd::correlate_grad_avx2(acc, g, src, off, layout, co) },
        _ => {
            // As the vector kernels do it: each lane's sum from 0 over every image and its
            // positions in order, fused, then added to `acc` once.
            for o in 0..co {
                for (j, &at) in off.iter().enumerate() {
                    let mut sum = [0.0f32; LANES];
                    for i in 0..images {
                        let go = &g[i * g_image + o * g_stride..][..n];
                        let s = &src[i * src_image + at..][..n];
                        for (gc, sc) in go.chunks_exact(LANES).zip(s.chunks_exact(LANES)) {
                            for l in 0..LANES {
                                sum[l] = gc[l].mul_add(sc[l], sum[l]);
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
    }
}

/// Sums each run of [`LANES`] values of a [`correlate_grad`] accumulator, in lane order.
pub fn reduce_lanes(acc: &[f32]) -> Vec<f32> {
    acc.chunks_exact(LANES)
        .map(|l| l.iter().fold(0.0, |s, v| s + v))
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! The kernels, written once over a vector type and compiled twice: for AVX-512 and for
    //! AVX2 + FMA. Everything below the entry points is `#[inline(always)]`, so it is compiled
    //! inside an entry point's `#[target_feature]` and every intrinsic inlines.

    use super::GradLayout;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// The few vector operations the kernels use. All unsafe: they need the CPU feature, and
    /// the pointers must be valid for `LANES` values.
    trait Vector: Copy {
        const LANES: usize;
        unsafe fn zero() -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn store(self, p: *mut f32);
        unsafe fn splat(p: *const f32) -> Self;
        /// `a * b + c`, fused.
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
        unsafe fn add(a: Self, b: Self) -> Self;
    }

    // SAFETY (both impls): callers uphold the trait's contract.
    impl Vector for __m256 {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { _mm256_add_ps(a, b) }
        }
    }

    impl Vector for __m512 {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { _mm512_add_ps(a, b) }
        }
    }

    /// Two AVX2 registers as one 16-lane vector: what the weight-gradient kernel runs on
    /// with AVX2, so that each of its 16 lanes sums the same positions as with AVX-512 (and
    /// so the same bits).
    #[derive(Clone, Copy)]
    struct Pair(__m256, __m256);

    impl Vector for Pair {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Pair(__m256::zero(), __m256::zero()) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { Pair(__m256::load(p), __m256::load(p.add(8))) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe {
                self.0.store(p);
                self.1.store(p.add(8));
            }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            unsafe { Pair(__m256::splat(p), __m256::splat(p)) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            unsafe { Pair(__m256::fma(a.0, b.0, c.0), __m256::fma(a.1, b.1, c.1)) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { Pair(__m256::add(a.0, b.0), __m256::add(a.1, b.1)) }
        }
    }

    /// Runs `$f::<$v, $ob, R>($args)` for the runtime count `$r` in `0..=11`: the remainder
    /// of a loop that ran `$f` with a wider block.
    macro_rules! remainder {
        ($r:expr, $f:ident::<$v:ident, $ob:ident>($($arg:expr),*)) => {
            match $r {
                0 => {}
                1 => $f::<$v, $ob, 1>($($arg),*),
                2 => $f::<$v, $ob, 2>($($arg),*),
                3 => $f::<$v, $ob, 3>($($arg),*),
                4 => $f::<$v, $ob, 4>($($arg),*),
                5 => $f::<$v, $ob, 5>($($arg),*),
                6 => $f::<$v, $ob, 6>($($arg),*),
                7 => $f::<$v, $ob, 7>($($arg),*),
                8 => $f::<$v, $ob, 8>($($arg),*),
                9 => $f::<$v, $ob, 9>($($arg),*),
                10 => $f::<$v, $ob, 10>($($arg),*),
                _ => $f::<$v, $ob, 11>($($arg),*),
            }
        };
    }

    /// `OB x (LANES * PV)` outputs at `p`: every tap broadcast once per channel and fused into
    /// `PV` registers of positions. `OB * PV` accumulators: enough to hide the FMA latency,
    /// few enough to stay in registers.
    #[inline(always)]
    unsafe fn block<V: Vector, const OB: usize, const PV: usize>(
        out: *mut f32,
        out_stride: usize,
        p: usize,
        src: *const f32,
        off: &[usize],
        w: *const f32,
    ) {
        let taps = off.len();
        // SAFETY (whole body): the caller keeps `p + LANES * PV` within the bounds
        // `correlate` asserted, for OB channels of `out` and `w`.
        unsafe {
            let mut acc = [[V::zero(); PV]; OB];
            for (j, &at) in off.iter().enumerate() {
                let s = src.add(p + at);
                for (b, accb) in acc.iter_mut().enumerate() {
                    let wb = V::splat(w.add(b * taps + j));
                    for (v, a) in accb.iter_mut().enumerate() {
                        *a = V::fma(wb, V::load(s.add(V::LANES * v)), *a);
                    }
                }
            }
            for (b, accb) in acc.iter().enumerate() {
                for (v, a) in accb.iter().enumerate() {
                    a.store(out.add(b * out_stride + p + V::LANES * v));
                }
            }
        }
    }

    /// All `n` positions of `OB` output channels, `LANES * PV` at a time, then the rest at once.
    #[inline(always)]
    unsafe fn rows<V: Vector, const OB: usize, const PV: usize>(
        out: *mut f32,
        out_stride: usize,
        n: usize,
        src: *const f32,
        off: &[usize],
        w: *const f32,
    ) {
        let (mut p, step) = (0, V::LANES * PV);
        // SAFETY: every block ends at or before `n`, a multiple of LANES.
        unsafe {
            while p + step <= n {
                block::<V, OB, PV>(out, out_stride, p, src, off, w);
                p += step;
            }
            remainder!(
                (n - p) / V::LANES,
                block::<V, OB>(out, out_stride, p, src, off, w)
            );
        }
    }

    /// Output channels `OB = 4, 3, 2, 1` with `PV[4 - OB]` position registers each.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn correlate_with<
        V: Vector,
        const P4: usize,
        const P3: usize,
        const P2: usize,
        const P1: usize,
    >(
        out: &mut [MaybeUninit<f32>],
        out_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        w: &[f32],
        co: usize,
    ) {
        let taps = off.len();
        let (out, src, w) = (out.as_mut_ptr().cast::<f32>(), src.as_ptr(), w.as_ptr());
        let mut o = 0;
        // SAFETY: `correlate` asserted the bounds for all `co` channels.
        unsafe {
            while o < co {
                let (op, wp) = (out.add(o * out_stride), w.add(o * taps));
                let ob = (co - o).min(4);
                match ob {
                    4 => rows::<V, 4, P4>(op, out_stride, n, src, off, wp),
                    3 => rows::<V, 3, P3>(op, out_stride, n, src, off, wp),
                    2 => rows::<V, 2, P2>(op, out_stride, n, src, off, wp),
                    _ => rows::<V, 1, P1>(op, out_stride, n, src, off, wp),
                }
                o += ob;
            }
        }
    }

    /// `OB x TB` lane accumulators over all `n` positions of every image, `acc` and `off`
    /// pointing at the block's first tap; `OB` gradient registers and one source register
    /// besides.
    #[inline(always)]
    unsafe fn grad_block<V: Vector, const OB: usize, const TB: usize>(
        acc: *mut f32,
        taps: usize,
        g: *const f32,
        src: *const f32,
        off: &[usize],
        l: GradLayout,
    ) {
        // SAFETY (whole body): the caller leaves `TB` taps and `OB` channels from here, and
        // every image within the bounds `correlate_grad` asserted.
        unsafe {
            let mut a = [[V::zero(); TB]; OB];
            for img in 0..l.images {
                let (g, src) = (g.add(img * l.g_image), src.add(img * l.src_image));
                let mut p = 0;
                while p < l.n {
                    let mut gv = [V::zero(); OB];
                    for (b, v) in gv.iter_mut().enumerate() {
                        *v = V::load(g.add(b * l.g_stride + p));
                    }
                    for t in 0..TB {
                        let s = V::load(src.add(p + off[t]));
                        for b in 0..OB {
                            a[b][t] = V::fma(gv[b], s, a[b][t]);
                        }
                    }
                    p += V::LANES;
                }
            }
            for (b, ab) in a.iter().enumerate() {
                for (t, v) in ab.iter().enumerate() {
                    let at = acc.add((b * taps + t) * super::LANES);
                    V::add(V::load(at), *v).store(at);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn grad_rows<V: Vector, const OB: usize, const TB: usize>(
        acc: *mut f32,
        g: *const f32,
        src: *const f32,
        off: &[usize],
        l: GradLayout,
    ) {
        let (taps, lanes) = (off.len(), super::LANES);
        let mut j = 0;
        // SAFETY: every block stays within `taps` taps and `OB` channels.
        unsafe {
            while j + TB <= taps {
                let a = acc.add(j * lanes);
                grad_block::<V, OB, TB>(a, taps, g, src, &off[j..], l);
                j += TB;
            }
            let (a, o) = (acc.add(j * lanes), &off[j..]);
            remainder!(taps - j, grad_block::<V, OB>(a, taps, g, src, o, l));
        }
    }

    /// Output channels `OB = 3, 2, 1` with `TB[3 - OB]` taps each.
    #[inline(always)]
    unsafe fn correlate_grad_with<V: Vector, const T3: usize, const T2: usize, const T1: usize>(
        acc: &mut [f32],
        g: &[f32],
        src: &[f32],
        off: &[usize],
        l: GradLayout,
        co: usize,
    ) {
        let (taps, lanes) = (off.len(), super::LANES);
        let (acc, g, src) = (acc.as_mut_ptr(), g.as_ptr(), src.as_ptr());
        let mut o = 0;
        // SAFETY: `correlate_grad` asserted the bounds for all `co` channels.
        unsafe {
            while o < co {
                let (ap, gp) = (acc.add(o * taps * lanes), g.add(o * l.g_stride));
                let ob = (co - o).min(3);
                match ob {
                    3 => grad_rows::<V, 3, T3>(ap, gp, src, off, l),
                    2 => grad_rows::<V, 2, T2>(ap, gp, src, off, l),
                    _ => grad_rows::<V, 1, T1>(ap, gp, src, off, l),
                }
                o += ob;
            }
        }
    }

    // The entry points. Block sizes: AVX2 has 16 registers (12 accumulators), AVX-512 32.

    #[target_feature(enable = "avx512f")]
    pub unsafe fn correlate_avx512(
        out: &mut [MaybeUninit<f32>],
        out_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        w: &[f32],
        co: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { correlate_with::<__m512, 4, 5, 8, 12>(out, out_stride, n, src, off, w, co) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn correlate_avx2(
        out: &mut [MaybeUninit<f32>],
        out_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        w: &[f32],
        co: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { correlate_with::<__m256, 3, 4, 6, 12>(out, out_stride, n, src, off, w, co) }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn correlate_grad_avx512(
        acc: &mut [f32],
        g: &[f32],
        src: &[f32],
        off: &[usize],
        l: GradLayout,
        co: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { correlate_grad_with::<__m512, 6, 8, 11>(acc, g, src, off, l, co) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn correlate_grad_avx2(
        acc: &mut [f32],
        g: &[f32],
        src: &[f32],
        off: &[usize],
        l: GradLayout,
        co: usize,
    ) {
        // SAFETY: forwarded from the caller. 16-lane pairs: each accumulator takes two of the
        // 16 registers, hence the smaller blocks.
        unsafe { correlate_grad_with::<Pair, 1, 2, 5>(acc, g, src, off, l, co) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 31) % 97) as f32 / 97.0 - 0.5)
            .collect()
    }

    /// Every implementation this CPU has against the definitions, summed in f64, and against
    /// each other bit for bit, for channel and tap counts that hit every block size and
    /// remainder, and lengths shorter and longer than one block.
    #[test]
    fn kernels_match_their_definitions() {
        let cases = [
            (1, 1, 5),
            (1, 23, 800),
            (2, 9, 40),
            (4, 9, 40),
            (6, 25, 668),
            (7, 10, 22),
            (16, 150, 92),
        ];
        for (co, taps, len) in cases {
            let off: Vec<usize> = (0..taps).map(|j| j * 3 + j % 2).collect();
            let n = round_up(len);
            let src = data(n + off[taps - 1], 1);
            let (w, g) = (data(co * taps, 2), data(co * n, 3));
            // What the portable kernel gives; every other must give the same bits.
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for &kernel in Kernel::available() {
                let what = format!("{kernel:?} {co} channels {taps} taps {len} long");
                let mut out = vec![f32::NAN; co * n];
                correlate_with(kernel, &mut out, n, len, &src, &off, &w);
                for o in 0..co {
                    for p in 0..n {
                        let r: f64 = (0..taps)
                            .map(|j| w[o * taps + j] as f64 * src[p + off[j]] as f64)
                            .sum();
                        assert!((out[o * n + p] as f64 - r).abs() < 1e-4, "{what}: forward");
                    }
                }
                // Two images: the second's data right after the first's.
                let (g2, src2) = ([&g[..], &g[..]].concat(), [&src[..], &src[..]].concat());
                let input = GradInput {
                    g: &g2,
                    g_stride: n,
                    g_image: g.len(),
                    src: &src2,
                    src_image: src.len(),
                    images: 2,
                    len,
                };
                let mut acc = vec![0.0; co * taps * LANES];
                correlate_grad_with(kernel, &mut acc, input, &off);
                let gw = reduce_lanes(&acc);
                for o in 0..co {
                    for j in 0..taps {
                        let r: f64 = 2.0
                            * (0..n)
                                .map(|p| g[o * n + p] as f64 * src[p + off[j]] as f64)
                                .sum::<f64>();
                        assert!((gw[o * taps + j] as f64 - r).abs() < 1e-3, "{what}: grad");
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                match &first {
                    None => first = Some((out, gw)),
                    Some((out0, gw0)) => {
                        assert_eq!(bits(&out), bits(out0), "{what}: forward bits");
                        assert_eq!(bits(&gw), bits(gw0), "{what}: grad bits");
                    }
                }
            }
        }
    }
}
