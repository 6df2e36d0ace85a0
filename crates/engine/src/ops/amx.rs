//! The bf16 product of [`super::bf16`] on AMX tiles, through inline
//! assembly (Rust's AMX intrinsics are unstable).
//!
//! AMX has eight tile registers of up to 16 rows × 64 bytes. `tdpbf16ps
//! C, A, B` adds to the 16×16 f32 tile `C` the products of `A` (16 rows of
//! 32 bf16) and `B` (16 rows of 16 VNNI pairs: 32 deep × 16 columns), one
//! 16×16×32 block of multiply-adds per instruction. The kernel keeps a
//! 32×32 block of `C` in tiles 0–3, loads two tiles of `A` (4, 5) and two
//! of `B` (6, 7) per 32 of depth, and issues four products: every tile it
//! loads is used twice. Tiles are loaded straight from the caller's
//! layouts with their row strides (`tileloadd` takes a stride register),
//! so a convolution's taps read its shifted input block in place.
//!
//! Linux hands out the tile registers' 8 KiB of state only to processes
//! that ask (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`,
//! <https://docs.kernel.org/arch/x86/xstate.html>); [`available`] asks
//! once, for the whole process. Each call configures the tiles
//! (`ldtilecfg`) on its own thread and releases them (`tilerelease`) when
//! done. Instruction reference: Intel® Architecture Instruction Set
//! Extensions Programming Reference, chapter 3 (AMX).

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use super::bf16::{Gemm, Segment};

/// Whether the CPU has AMX-TILE and AMX-BF16 and Linux let this process
/// use the tile state. Asked once.
pub(super) fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            // CPUID leaf 7, sub-leaf 0, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
            let leaf = std::arch::x86_64::__cpuid_count(7, 0);
            let cpu = (leaf.edx >> 22) & 1 == 1 && (leaf.edx >> 24) & 1 == 1;
            cpu && request_tile_state()
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`; true when
/// granted (kernels before 5.16, or without AMX support, refuse).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call that only changes which extended states
    // this process may use; `syscall` clobbers rcx and r11 and nothing
    // else.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

/// The tile configuration `ldtilecfg` reads: palette 1, every tile used 16
/// rows × 64 bytes.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
    reserved2: [u8; 16],
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
impl TileConfig {
    fn full() -> Self {
        let mut colsb = [0; 16];
        let mut rows = [0; 16];
        colsb[..8].fill(64);
        rows[..8].fill(16);
        Self {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb,
            rows,
            reserved2: [0; 16],
        }
    }
}

/// `C = Σ A_s · B_s` on AMX tiles, 32×32 blocks of `C` at a time.
///
/// # Safety
/// As [`Gemm::run`], on a CPU for which [`available`] is true.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(super) unsafe fn gemm(g: &Gemm, segments: &[Segment], c: *mut f32) {
    use std::arch::asm;
    let cfg = TileConfig::full();
    let (sa, sb, sc) = (g.lda * 2, g.ldb * 4, g.ldc * 4);
    // SAFETY (every asm block): the tile registers are touched by this
    // function only, between its `ldtilecfg` and `tilerelease`; loads read
    // 16 rows of 64 bytes at the given strides from rows m0..m0 + 32 of A
    // and pairs k/2 .. k/2 + 16 at columns n0..n0 + 32 of B, stores write
    // rows m0..m0 + 32, columns n0..n0 + 32 of C: inside the extents the
    // caller guarantees.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &raw const cfg, options(nostack, readonly));
        for n0 in (0..g.n).step_by(32) {
            for m0 in (0..g.m).step_by(32) {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
                for s in segments {
                    let a = s.a.add(m0 * g.lda);
                    let b = s.b.add(n0);
                    for k0 in (0..g.k).step_by(32) {
                        let a0 = a.add(k0);
                        let b0 = b.add(k0 / 2 * g.ldb);
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a0,
                            a1 = in(reg) a0.add(16 * g.lda),
                            b0 = in(reg) b0,
                            b1 = in(reg) b0.add(16),
                            sa = in(reg) sa,
                            sb = in(reg) sb,
                            options(nostack, readonly)
                        );
                    }
                }
                let c0 = c.add(m0 * g.ldc + n0);
                asm!(
                    "tilestored [{c0} + {sc}*1], tmm0",
                    "tilestored [{c1} + {sc}*1], tmm1",
                    "tilestored [{c2} + {sc}*1], tmm2",
                    "tilestored [{c3} + {sc}*1], tmm3",
                    c0 = in(reg) c0,
                    c1 = in(reg) c0.add(16),
                    c2 = in(reg) c0.add(16 * g.ldc),
                    c3 = in(reg) c0.add(16 * g.ldc + 16),
                    sc = in(reg) sc,
                    options(nostack)
                );
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// No AMX off Linux on x86-64: [`available`] is false there, so this is
/// never called.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(super) unsafe fn gemm(_: &super::bf16::Gemm, _: &[super::bf16::Segment], _: *mut f32) {
    unreachable!("AMX is used only where `available` is true");
}
