//! Runtime instruction-set dispatch for the kit's own loops (im2col, col2im, pooling,
//! BatchNorm, the optimizer): each hot loop is compiled three times, for baseline x86-64, for
//! AVX2 + FMA and for AVX-512, and the best one the CPU has is picked at run time. Nothing
//! depends on `-C target-cpu`, so the notebooks (which build the kit without the workspace's
//! flags) get the same code.
//!
//! The numbers do not depend on the path: the loops are written without reassociated
//! reductions (sums run in a fixed lane order) and Rust never contracts `a * b + c` into a
//! fused multiply-add on its own, so wider vectors change the speed, not the rounding.
//! `tests/simd.rs` checks every kernel's fast path against its portable path bit for bit.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction set the kernels can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Baseline x86-64 (SSE2), or any other architecture.
    Portable,
    /// AVX2 with FMA (Haswell and later, AMD Zen).
    Avx2,
    /// AVX-512 F/BW/VL/DQ (Skylake-SP and later, AMD Zen 4).
    Avx512,
}

impl Isa {
    /// Every instruction set, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 => 3,
        }
    }

    fn from_code(c: u8) -> Option<Isa> {
        match c {
            1 => Some(Isa::Portable),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }
}

/// Environment variable that caps the instruction set (`portable`, `avx2`, `avx512`), for
/// comparisons: `MNIST_KIT_ISA=avx2 mnist-kit bench ...`.
pub const ISA_ENV: &str = "MNIST_KIT_ISA";

/// The best instruction set this CPU supports.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

// 0: not decided yet; else `Isa::code`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The instruction set the kernels run on: [`detected`], capped by `MNIST_KIT_ISA` or by
/// [`force`].
pub fn active() -> Isa {
    if let Some(isa) = Isa::from_code(ACTIVE.load(Ordering::Relaxed)) {
        return isa;
    }
    let best = detected();
    let isa = std::env::var(ISA_ENV)
        .ok()
        .and_then(|v| Isa::ALL.into_iter().find(|i| i.name() == v.trim()))
        .map_or(best, |cap| cap.min(best));
    ACTIVE.store(isa.code(), Ordering::Relaxed);
    isa
}

/// Runs the kernels on `isa` (capped at what the CPU has) from now on, or back on the best
/// one with `None`. For tests and benchmarks: the results are the same on every path.
pub fn force(isa: Option<Isa>) -> Isa {
    let best = detected();
    let chosen = isa.map_or(best, |i| i.min(best));
    ACTIVE.store(chosen.code(), Ordering::Relaxed);
    chosen
}

/// Defines a function whose body is compiled for each [`Isa`] and dispatched at run time on
/// [`active`]. The body must not call non-inlined helpers in its hot loop (they would not be
/// compiled for the wider instruction set).
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                match $crate::ops::simd::active() {
                    // SAFETY: `active` only returns an instruction set the CPU supports.
                    $crate::ops::simd::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::ops::simd::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::ops::simd::Isa::Portable => {}
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use multiversion;
