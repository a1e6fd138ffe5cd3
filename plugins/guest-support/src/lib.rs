//! Helpers shared by the plugin components.
//!
//! Why [`Json`] exists instead of `serde_json::Value`: the workspace enables serde_json's
//! `preserve_order` (a `std` guest of this workspace gets it too), so `Value` objects are
//! `IndexMap`s with std's `RandomState`. On `wasm32-wasip2` the first `RandomState` calls
//! `wasi:random/insecure-seed`, and the host links no WASI: every unknown import traps. A
//! plugin that parsed a JSON object would trap on its first call. [`Json`] keeps objects as a
//! `Vec` of entries (ordered, no hashing); serde_json is still the parser and printer. Check a
//! built plugin with `grep -c insecure-seed target/wasm32-wasip2/wasm-release/<plugin>.wasm`
//! (must print 0).
//!
//! On `wasm32` the crate (and the stock plugins) build without `std`: `std`'s runtime would
//! bring imports of `wasi:cli` and `wasi:io` that the host only stubs, and each stubbed
//! import costs every load (linker stubs, component metadata, trampolines). [`prelude`] gives
//! that build what `std`'s prelude gives a native one; the allocator is `dlmalloc` (what `std`
//! itself uses on Wasm).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod json;

pub use json::Json;

/// `use guest_support::prelude::*;` in every module of a `no_std` Wasm build: the names
/// `std`'s prelude has and `core`'s lacks. Empty natively, where `std`'s prelude has them.
pub mod prelude {
    #[cfg(target_arch = "wasm32")]
    pub use alloc::{
        borrow::ToOwned,
        boxed::Box,
        format,
        string::{String, ToString},
        vec,
        vec::Vec,
    };
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// `memcmp` for the `no_std` Wasm build: `core` calls it for slice and string comparisons, and
/// without `std` no wasi-libc is linked to provide it (`compiler_builtins` has it only behind
/// an unstable feature). Volatile reads keep the optimiser from turning the loop back into a
/// `memcmp` call; the guests compare short keys and labels.
///
/// # Safety
/// The C contract: `a` and `b` point to `n` readable bytes each.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: within the `n` bytes the caller vouches for.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// The canonical ABI's allocator export, which the host calls to place strings and lists in
/// the guest's memory. On `wasm32-wasip2` wit-bindgen leaves it to wasi-libc, which a `no_std`
/// build does not link; this one is wit-bindgen's own on other targets, over our allocator.
///
/// # Safety
/// Called by the host under the canonical ABI: `old_ptr`/`old_len`/`align` describe an earlier
/// allocation of this function (or `old_len` is 0), and `align` is a power of two.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI's contract above.
    let ptr = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}
