//! What the command line writes to stdout, through one function that ends the command quietly
//! when its reader has gone.

/// The exit code when stdout cannot be written for another reason (sysexits' EX_UNAVAILABLE).
const UNAVAILABLE: u8 = 69;

/// Writes `text` to stdout. A reader that has gone (`focalpoint log | head -1`) ends the
/// command quietly, as for any Unix filter, instead of a panic.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(i32::from(UNAVAILABLE));
    }
}

/// `print!` through [`emit`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::emit(&format!($($arg)*)) };
}

/// `println!` through [`emit`].
macro_rules! outln {
    () => { $crate::cli::output::emit("\n") };
    ($($arg:tt)*) => { $crate::cli::output::emit(&format!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use {out, outln};
