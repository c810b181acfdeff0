//! The process's heap: mimalloc, entered through its plain entry points whenever the layout
//! allows, as std's `System` allocator enters `malloc`.
//!
//! Why not `mimalloc::MiMalloc`: it calls mimalloc's `_aligned` entry points for every
//! allocation. In mimalloc 3 those serve a block over 1 KiB whose size class is not a power of
//! two by over-allocating and marking the page as holding interior pointers; on the proxy path
//! that was about one allocation in six, and a proxied request cost ~3 700 more instructions
//! than through the plain entry points (load-tests/RESULTS.md, "Pipeline cost, round 7").
//! Every mimalloc block is aligned to at least a machine word (mimalloc's own
//! `mi_realloc_aligned` relies on it and takes the plain path for such alignments), so a
//! layout asking for no more than that loses nothing.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The alignment every mimalloc block has, whatever its size.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator (`#[global_allocator]` in the binary).
#[derive(Debug, Default, Clone, Copy)]
pub struct Mimalloc;

// SAFETY: each method forwards to the mimalloc function with the same contract as the
// `GlobalAlloc` method; the plain entry points are used only when the layout's alignment is
// one every mimalloc block already has.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract); mimalloc frees
        // plain and aligned blocks alike.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl's comment; `ptr` came from this allocator.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes either side of mimalloc's small/medium boundaries and alignments from a byte to a
    /// page: every block is aligned as asked, writable to its end, and keeps its bytes across a
    /// grow and a shrink.
    #[test]
    fn every_layout_gets_an_aligned_block_that_keeps_its_bytes() {
        let heap = Mimalloc;
        let sizes = [
            1usize, 7, 8, 9, 24, 100, 1024, 1025, 1500, 4096, 15_000, 70_000,
        ];
        let aligns = [1usize, 2, 8, 16, 64, 4096];
        for &size in &sizes {
            for &align in &aligns {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = heap.alloc(layout);
                    assert!(!p.is_null(), "size {size} align {align}");
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    for i in 0..size {
                        p.add(i).write(i as u8);
                    }
                    let grown = heap.realloc(p, layout, size * 3);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "grown: size {size} align {align}"
                    );
                    for i in 0..size {
                        assert_eq!(grown.add(i).read(), i as u8, "grown byte {i}");
                    }
                    let shrunk = heap.realloc(
                        grown,
                        Layout::from_size_align(size * 3, align).unwrap(),
                        size,
                    );
                    assert_eq!(
                        shrunk as usize % align,
                        0,
                        "shrunk: size {size} align {align}"
                    );
                    for i in 0..size {
                        assert_eq!(shrunk.add(i).read(), i as u8, "shrunk byte {i}");
                    }
                    heap.dealloc(shrunk, layout);

                    let z = heap.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed: size {size} align {align}");
                    assert!(
                        (0..size).all(|i| z.add(i).read() == 0),
                        "zeroed: size {size}"
                    );
                    heap.dealloc(z, layout);
                }
            }
        }
    }
}
