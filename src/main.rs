//! The `harbormq` binary: parses the command line and reports failure with a non-zero exit code.

/// The broker allocates and frees a message body, its properties and its outgoing batches per message, from
/// one thread per core; mimalloc serves those from per-thread free lists whatever their size, where the
/// system allocator falls back to its locked bins above its small-size caches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    harbormq::cli::main()
}
