//! Scratch memory on 2 MiB pages where Linux gives them (`madvise(MADV_HUGEPAGE)`, which
//! transparent huge pages honour in their common "madvise" mode). The bf16 input's tile rows lie
//! a whole plane apart (100 KiB at 160×160), so on 4 KiB pages every row of every tile read is a
//! TLB entry of its own.

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;

const HUGE_PAGE: usize = 2 << 20;

/// A `u32` buffer, 2 MiB aligned, zeroed when first allocated.
pub(crate) struct Scratch {
    ptr: NonNull<u32>,
    capacity: usize,
    len: usize,
}

impl Scratch {
    fn allocate(len: usize) -> Self {
        let bytes = (4 * len.max(1)).next_multiple_of(HUGE_PAGE);
        let layout = Layout::from_size_align(bytes, HUGE_PAGE).expect("scratch layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut u32;
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        // SAFETY: advice on memory this buffer owns; failure only leaves small pages.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), bytes, libc::MADV_HUGEPAGE);
        }
        Self {
            ptr,
            capacity: bytes / 4,
            len,
        }
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(4 * self.capacity, HUGE_PAGE).expect("scratch layout")
    }

    pub fn as_mut_slice(&mut self) -> &mut [u32] {
        // SAFETY: `len ≤ capacity` initialised elements (zeroed at allocation), and `&mut self`
        // is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout by `allocate`.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), self.layout()) }
    }
}

thread_local! {
    /// The buffer of the last call on this thread, kept for the next.
    static KEPT: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// `len` words: this thread's kept buffer (holding what its last user wrote) when it is large
/// enough, else new zeros.
pub(crate) fn scratch(len: usize) -> Scratch {
    match KEPT.with(|k| k.borrow_mut().take()) {
        Some(mut kept) if kept.capacity >= len => {
            kept.len = len;
            kept
        }
        _ => Scratch::allocate(len),
    }
}

/// Keeps `scratch` for the next [`scratch`] on this thread.
pub(crate) fn keep(scratch: Scratch) {
    KEPT.with(|k| *k.borrow_mut() = Some(scratch));
}
