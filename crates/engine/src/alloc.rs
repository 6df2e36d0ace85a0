//! How the process's allocator treats the engine's activation buffers.
//!
//! A UNet step allocates and frees hundreds of activation tensors of 1–100
//! MiB. glibc's malloc serves every block above its mmap threshold (128 KiB
//! to 32 MiB, adaptive) with a fresh `mmap` and returns it with `munmap`
//! when it is freed, so each step faults its working set in again page by
//! page, and the kernel zeroes every page: on SD 1.5 that was about 8 % of
//! a step's time in page faults, page clearing and cgroup accounting
//! (`perf record` of `easel bench engine`).
//!
//! [`keep_freed_buffers`] (called once at startup by the `easel` binary)
//! makes malloc serve all blocks from its heaps and keep freed memory for
//! the next allocation instead of giving it back, so from the second step
//! on the same pages are reused; the peak RSS is unchanged (the same
//! buffers are live at the worst moment). [`release_free_memory`] hands
//! the memory that is free back to the system; the engine calls it after
//! each generation, so an idle server does not hold its last peak.
//!
//! Both are no-ops on anything but Linux with glibc.
//!
//! [`zeroed_f32`] allocates a large buffer that lives as long as the model
//! (a weight) on transparent huge pages where the kernel offers them on
//! request (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`, a
//! common default): one fault per 2 MiB instead of per 4 KiB while loading
//! (SD 1.5's 4 GB of weights are a million small pages), and far fewer TLB
//! misses when every step streams the weights again.

/// Keep freed blocks for reuse rather than unmapping them (see the module
/// docs). Idempotent; cheap.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters; any value is
    // valid for these two, and glibc serialises the change internally.
    unsafe {
        // No block is served by its own mmap: all come from the heaps
        // (a block too large for a thread's heap still falls back to mmap).
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // Never trim the heap top on free; release_free_memory does it.
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Returns the allocator's free memory to the system (`malloc_trim`).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes malloc's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes from which [`zeroed_f32`] asks for huge pages (a few huge pages'
/// worth: below that the rounding to 2 MiB boundaries leaves little).
const HUGE_FROM_BYTES: usize = 8 << 20;

/// A zeroed buffer of `len` floats, backed by transparent huge pages where
/// the kernel grants them (see the module docs). The same as
/// `vec![0f32; len]` elsewhere.
pub fn zeroed_f32(len: usize) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    if len * 4 >= HUGE_FROM_BYTES {
        advise_huge_pages(v.as_mut_ptr().cast(), len * 4);
    }
    v.resize(len, 0.0);
    v
}

/// `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned pages inside
/// `ptr..ptr + bytes` (not yet touched). Advice only: failure changes
/// nothing but speed, so it is ignored.
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const HUGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside an allocation the caller owns
            // and has not handed out; MADV_HUGEPAGE changes how its pages
            // are backed, never their contents or mapping.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (ptr, bytes);
}
