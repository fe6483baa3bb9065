//! How the server binaries' allocator (mimalloc, `src/main.rs`) gives memory back.
//!
//! mimalloc 3 keeps memory it has freed for a second (`purge_delay`, 1000 ms) before handing it
//! back to the system, in case it is asked for again. Start-up frees tens of megabytes at once
//! when it parses a large configuration: the TOML parser's token and event buffers grow by
//! doubling, and every smaller buffer left behind stayed resident. A server with 10,000
//! clients, 1,000 identity providers and 1,000 audiences peaked at 120 MiB and idled there. At
//! 10 ms (mimalloc 2's default) it peaks at 74 MiB and idles at 57 MiB, and the load test's
//! throughput did not move (docs/performance.md, twenty-first run).
//!
//! This is the crate's one `unsafe` call: mimalloc's options have no safe interface.

/// mimalloc's index of `purge_delay` (`mi_option_purge_delay` in its `include/mimalloc.h`).
/// `libmimalloc-sys` names only the options of older versions, so the number is written here
/// and checked before use: see [`return_freed_memory_promptly`].
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc 3's built-in `purge_delay`, in milliseconds: what [`PURGE_DELAY`] must read before
/// it is set, or the index names another option.
const BUILT_IN_DELAY_MS: std::ffi::c_long = 1000;

/// The delay set instead, in milliseconds.
pub const DELAY_MS: std::ffi::c_long = 10;

/// Shortens mimalloc's purge delay to [`DELAY_MS`]. Call it first thing in `main`, before any
/// other thread exists (mimalloc's option setters are not thread-safe).
///
/// Returns false, and changes nothing, when the environment sets `MIMALLOC_PURGE_DELAY` (the
/// operator's choice stands) or the option does not hold mimalloc 3's built-in value: then a
/// newer mimalloc numbers its options differently, and writing [`PURGE_DELAY`] could change
/// the wrong setting.
#[allow(unsafe_code)]
pub fn return_freed_memory_promptly() -> bool {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return false;
    }
    // SAFETY: both calls read or write one integer in mimalloc's option table; the caller runs
    // them before any other thread exists, so nothing reads the option concurrently.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) != BUILT_IN_DELAY_MS {
            return false;
        }
        libmimalloc_sys::mi_option_set(PURGE_DELAY, DELAY_MS);
    }
    true
}

/// What both server binaries' `main` does (`frontdesk` and the load test's
/// `frontdesk-unaudited`, which must match it): the allocator's option first, while the
/// process has one thread, then the multi-threaded runtime that runs `program`. A runtime
/// that cannot start is reported under the binary's `name`.
pub fn run_server_main(
    name: &str,
    program: impl std::future::Future<Output = std::process::ExitCode>,
) -> std::process::ExitCode {
    return_freed_memory_promptly();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(program),
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads one integer of mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    /// Fails when a mimalloc upgrade renumbers its options or changes the built-in delay: then
    /// the index above must be checked against its `include/mimalloc.h` again.
    #[test]
    fn the_purge_delay_is_found_by_its_index_and_shortened() {
        assert_eq!(purge_delay(), BUILT_IN_DELAY_MS);
        assert!(return_freed_memory_promptly());
        assert_eq!(purge_delay(), DELAY_MS);
        // Once set, the built-in value is gone, so a second call declines.
        assert!(!return_freed_memory_promptly());
    }
}
