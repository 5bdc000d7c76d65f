//! The `harbormq` binary: parses the command line and reports failure with a non-zero exit code.

/// Chosen by measurement (`harbormq bench`, `benches/compare.sh`): MQTT 5.0 fan-in allocates a small box of
/// properties per message, in batches, which the system allocator's small per-thread caches serve slowly;
/// mimalloc served them fast but made the store's commits 15% slower; jemalloc does both well.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    harbormq::cli::main()
}
