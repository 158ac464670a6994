//! The `portcullis` command line: `serve` (admission webhook), `check` (the
//! same decision from a CI pipeline), `policy lint`, `audit verify`, `ping`
//! (does a running webhook answer).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

/// mimalloc rather than the system allocator: deciding a request allocates
/// many small objects on several threads at once, where glibc's allocator
/// contends on its arena locks (BENCHMARKS.md says what it bought).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
