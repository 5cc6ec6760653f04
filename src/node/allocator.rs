//! The memory allocator of the `focalpoint` process: jemalloc, with one arena and a background
//! thread that returns freed pages to the system within half a second.
//!
//! A node's threads hand buffers to one another all the time: an envelope decoded on a tokio
//! worker is stored and freed by the log's writer thread, a receipt built by the writer is sent
//! by a worker. glibc's allocator locks the arena a freed block came from, and under load the
//! threads spent a quarter of their waits on those locks. jemalloc caches small blocks per
//! thread; one arena keeps the resident memory where glibc's was.
//!
//! The binary and the benchmarks install it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: focalpoint::node::allocator::Allocator = focalpoint::node::allocator::Allocator;
//! ```
//!
//! jemalloc is built with its settings (`JEMALLOC_SYS_WITH_MALLOC_CONF` in `.cargo/config.toml`);
//! the environment variable `_RJEM_MALLOC_CONF` overrides them when a process starts.

pub use tikv_jemallocator::Jemalloc as Allocator;
