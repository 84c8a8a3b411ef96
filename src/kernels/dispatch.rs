//! Which kernel runs: `LESSER_KERNEL`, else the fastest this CPU has; and the one place
//! where a [`Kernel`] becomes the [`Isa`] that runs it.

use super::{Isa, portable::Portable};

/// An implementation of the kernels: an instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, for any CPU.
    Portable,
    /// AVX2 + FMA (x86-64 from 2013 on).
    Avx2,
    /// AVX-512F.
    Avx512,
    /// NEON (every aarch64 CPU).
    Neon,
}

impl Kernel {
    /// The implementation every op runs: the one `LESSER_KERNEL` names (`portable`, `avx2`,
    /// `avx512` or `neon`), else the fastest this CPU runs. All give the same bits, so this changes
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
            format!("LESSER_KERNEL={name}: unknown kernel; use portable, avx2, avx512 or neon")
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
        [Kernel::Portable, Kernel::Avx2, Kernel::Avx512, Kernel::Neon]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The name `LESSER_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::Neon => "neon",
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
            #[cfg(target_arch = "aarch64")]
            all.push(Kernel::Neon);
            all
        })
    }
}

/// The implementation of `kernel`, which this CPU must support (else the portable one).
pub(super) fn isa(kernel: Kernel) -> &'static dyn Isa {
    match kernel {
        Kernel::Portable => &Portable,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => super::avx2::get().unwrap_or(&Portable),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => super::avx512::get().unwrap_or(&Portable),
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => super::neon::get(),
        #[allow(unreachable_patterns)]
        _ => &Portable,
    }
}
