//! The module allocates through Redis (so `used_memory` and `maxmemory` see it); unit tests,
//! which run without a server, use the system allocator.

use std::alloc::{GlobalAlloc, Layout};

pub struct RecAlloc;

#[cfg(not(test))]
type Inner = redis_module::alloc::RedisAlloc;
#[cfg(test)]
type Inner = std::alloc::System;

#[cfg(not(test))]
const INNER: Inner = redis_module::alloc::RedisAlloc;
#[cfg(test)]
const INNER: Inner = std::alloc::System;

unsafe impl GlobalAlloc for RecAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INNER.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        INNER.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        INNER.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        INNER.realloc(ptr, layout, new_size)
    }
}
