//! `cargo bench --bench scale`: only the scale part of `cargo bench --bench exchange`, a node at
//! `FOCALPOINT_SCALE_ENTRIES` messages (default 1,000,000) with `FOCALPOINT_SCALE_CATCHUP`
//! queued ones (default 100,000), printed as one table.
//!
//! Run without `--bench` (as `cargo test` does) it only checks that it builds.

/// The node's own allocator, so that what is measured here is what the node runs.
#[global_allocator]
static ALLOCATOR: focalpoint::node::allocator::Allocator = focalpoint::node::allocator::Allocator;

mod common;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale benchmark: run it with `cargo bench --bench scale`");
        return;
    }
    let (entries, catchup) = common::scale_counts();
    println!("{:<62} {:>16}", "measurement", "value");
    common::scale::run(entries, catchup, |name, value| {
        println!("{name:<62} {value:>16}");
    });
}
