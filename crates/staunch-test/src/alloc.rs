//! A global allocator that counts the bytes live on the heap and their
//! high-water mark, for tests that bound what an operation allocates.
//!
//! Install it in a test binary of its own (a global allocator is the whole
//! process's, and a neighbouring test allocating meanwhile would blur the
//! figures):
//!
//! ```
//! use staunch_test::alloc::CountingAllocator;
//!
//! #[global_allocator]
//! static HEAP: CountingAllocator = CountingAllocator::new();
//!
//! let before = HEAP.live();
//! HEAP.reset_peak();
//! let buffer = vec![0u8; 4096];
//! assert!(HEAP.live() - before >= 4096);
//! drop(buffer);
//! assert!(HEAP.peak() - before >= 4096, "the peak remembers it");
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes currently allocated and the
/// most that were at once since [`reset_peak`](Self::reset_peak).
#[derive(Debug)]
pub struct CountingAllocator {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl CountingAllocator {
    /// A counter at zero, for a `#[global_allocator]` static.
    pub const fn new() -> Self {
        CountingAllocator {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The bytes allocated now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// The most bytes allocated at once since the last
    /// [`reset_peak`](Self::reset_peak).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Starts a new high-water mark from what is allocated now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::SeqCst);
    }

    fn grew(&self, size: usize) {
        let now = self.live.fetch_add(size, Ordering::SeqCst) + size;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn shrank(&self, size: usize) {
        self.live.fetch_sub(size, Ordering::SeqCst);
    }
}

impl Default for CountingAllocator {
    fn default() -> Self {
        CountingAllocator::new()
    }
}

// SAFETY: every call goes to `System` unchanged; beside it only the two
// counters change, and they never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract passes on to `System` as it is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (through this allocator) with
        // this layout.
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The old and the new block can both be live while it moves: the
        // new one counts first, so the peak includes the copy.
        self.grew(new_size);
        // SAFETY: the caller's pointer, layout and size pass on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            self.shrank(new_size);
        } else {
            self.shrank(layout.size());
        }
        p
    }
}
