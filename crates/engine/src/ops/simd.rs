//! The instruction set a kernel's inner loops are compiled for, detected
//! once per call; each kernel adds its own dispatching methods in an
//! `impl Simd` block next to its loops.

/// The widest instruction set this CPU runs, of those the kernels are
/// compiled for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Simd {
    /// AVX-512 F.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 with FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Whatever the build targets (SSE2 on x86-64).
    Baseline,
}

impl Simd {
    /// The best level this CPU supports (checked at run time, so one binary
    /// serves AVX2-only and AVX-512 machines).
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }
}
