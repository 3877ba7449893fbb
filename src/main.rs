//! The `llif` command line. Errors are one line on stderr and a non-zero exit code.

mod cli;

fn main() {
    llif::runtime::init();
    let code = match cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("llif: error: {e}");
            match e {
                llif::Error::Usage(_) => 2,
                _ => 1,
            }
        }
    };
    std::process::exit(code);
}
