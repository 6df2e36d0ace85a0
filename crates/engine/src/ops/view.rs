//! A 4-D f32 tensor in candle's CPU storage, with any strides, checked once
//! so that the kernels may read it through raw pointers; and the output
//! pointer their parallel tasks write through.

use candle_core::{Layout, Result, bail};

/// `data[offset + Σ iₖ·stridesₖ]` for every index below `dims`; [`View::new`]
/// has checked that all of them lie inside `data`.
pub(crate) struct View<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) offset: usize,
    pub(crate) dims: [usize; 4],
    pub(crate) strides: [usize; 4],
}

impl<'a> View<'a> {
    /// The view of `data` by `layout`; `op` names the kernel in errors.
    /// Fails for a layout that is not 4-D, is empty, or reaches outside its
    /// storage (the kernels read through raw pointers derived from it).
    pub(crate) fn new(op: &str, data: &'a [f32], layout: &Layout) -> Result<Self> {
        let (Ok(dims), Ok(strides)) = (
            <[usize; 4]>::try_from(layout.dims()),
            <[usize; 4]>::try_from(layout.stride()),
        ) else {
            bail!("{op}: expected 4-D tensors, got {:?}", layout.dims());
        };
        let last = layout.start_offset()
            + (0..4)
                .map(|i| dims[i].saturating_sub(1) * strides[i])
                .sum::<usize>();
        if dims.contains(&0) || last >= data.len() {
            bail!("{op}: empty tensor or layout outside its storage");
        }
        Ok(Self {
            data,
            offset: layout.start_offset(),
            dims,
            strides,
        })
    }

    /// The storage index of element `i`.
    pub(crate) fn at(&self, i: [usize; 4]) -> usize {
        self.offset + (0..4).map(|d| i[d] * self.strides[d]).sum::<usize>()
    }
}

/// The output buffer's pointer, shared by a kernel's parallel tasks.
///
/// Every kernel splits its output into disjoint parts, one per task (rows of
/// a head, a tile of an image, a group), writes each only from its own task
/// (in its `unsafe` blocks), and waits for every task before the buffer is
/// used: so no two threads ever touch the same element.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: the pointer is only written through, at disjoint offsets per task,
// while the kernel that made it waits for all its tasks (see above).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer `i` floats in (a method, so closures capture the `Send`
    /// wrapper rather than the bare pointer).
    pub(crate) fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}
