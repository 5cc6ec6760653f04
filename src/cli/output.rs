//! What the command line writes to stdout. A reader that has gone (`focalpoint log | head -1`)
//! ends the command as it ends any Unix filter, with the status of a SIGPIPE (141), quietly
//! and without a panic; any other failure to write stdout is said on stderr.

/// The exit status of a filter whose reader has gone: 128 + SIGPIPE, as a shell reports it.
pub const READER_GONE: u8 = 141;

/// A failure to write the command's own output: told apart from any other broken pipe.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout")]
pub struct Stdout(#[source] pub std::io::Error);

impl Stdout {
    /// Whether the reader has gone, rather than stdout failing otherwise.
    pub fn reader_gone(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes `text` to stdout.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(READER_GONE));
        }
        // Anything else (a full disk behind a redirect): said, and the command goes on.
        eprintln!("error: writing to stdout: {e}");
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
