//! The `lesser` binary: all logic lives in the library's `cli` module.

use std::process::ExitCode;

// mimalloc keeps freed buffers for reuse: the training loop allocates the same large
// activation buffers every step, which glibc's allocator returns to the OS and faults back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    lesser::cli::main()
}
