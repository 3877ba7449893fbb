//! `llif train …`: runs `llif-train …`, the way git and cargo run external subcommands, so that
//! only training loads libtorch.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::Args;

use llif::{Error, Result};

#[derive(Args)]
pub struct TrainArgs {
    /// Arguments for `llif-train` (e.g. `pixelcnn --out runs/x ...`; `--help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// `llif-train` beside this executable, else on `PATH`.
fn trainer() -> Option<PathBuf> {
    const NAME: &str = "llif-train";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(NAME)))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(NAME))
            .find(|p| p.is_file())
    })
}

pub fn run(a: TrainArgs) -> Result<()> {
    let exe = trainer().ok_or_else(|| {
        Error::Unsupported(
            "`llif train` needs the llif-train program (built with the `torch` feature, e.g. \
             `make build`), and it is neither beside llif nor on PATH"
                .into(),
        )
    })?;
    // exec only returns on failure.
    let err = std::process::Command::new(&exe).args(&a.args).exec();
    Err(Error::io(exe, err))
}
