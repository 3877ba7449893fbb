//! The `llif` command line. Errors are one line on stderr and an exit code that says whose
//! fault it was (see [`exit_code`]). This program never loads libtorch: `llif train` runs the
//! separate `llif-train`.

mod cli;

use llif::ErrorKind;

/// Exit codes (also in the README): 0 success, 1 environment (I/O) or batch failure, 2 usage,
/// 3 the input is corrupt or not llif, 4 unsupported by this build (newer version, unknown
/// family or model), 5 over a limit, 6 invalid model file, 70 internal error (a bug), 130
/// cancelled. Killed by a signal (SIGINT, SIGTERM, SIGPIPE on a closed stdout), the program
/// removes its temporary file and dies of that signal, as shells expect.
fn exit_code(e: &llif::Error) -> i32 {
    match e.kind() {
        ErrorKind::Caller => 2,
        ErrorKind::CorruptInput => 3,
        ErrorKind::Unsupported => 4,
        ErrorKind::LimitExceeded => 5,
        ErrorKind::Model => 6,
        ErrorKind::Internal => 70,
        ErrorKind::Cancelled => 130,
        _ => 1,
    }
}

fn main() {
    cli::install_signal_handlers();
    let code = match cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("llif: error: {e}");
            exit_code(&e)
        }
    };
    std::process::exit(code);
}
