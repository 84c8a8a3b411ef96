//! The `lesser` binary: all logic lives in the library's `cli` module.

use std::process::ExitCode;

// mimalloc keeps freed buffers for reuse: the training loop allocates the same large
// activation buffers every step, which glibc's allocator returns to the OS and faults back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the 16th of its options in both versions the sys
/// crate builds; the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // By default mimalloc hands freed memory back to the system after a delay, and each
    // training step faulted large buffers back in for the kernel to zero (5x the page faults
    // of a batch-normalized network's bench, a tenth of its time). A run keeps its peak.
    // SAFETY: sets an option before any thread but this one exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    lesser::cli::main()
}

#[cfg(test)]
mod tests {
    /// The option number is mimalloc's purge delay: its default in mimalloc 3 (which the sys
    /// crate builds) is 1000 ms, and no other option of its defaults to that.
    #[test]
    fn purge_delay_is_the_option_set() {
        // SAFETY: reads an option.
        let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(v, 1000);
    }
}
