//! Input and output for the CLI: `-` for stdin/stdout, atomic writes, no overwriting without
//! `--force`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use llif::{Error, Result};

/// Reads a whole input: a path, or `-` for standard input.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("<stdin>", e))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| Error::io(path, e))
    }
}

/// Where an output goes.
pub enum Output {
    Stdout,
    File(PathBuf),
}

impl Output {
    pub fn describe(&self) -> String {
        match self {
            Output::Stdout => "<stdout>".into(),
            Output::File(p) => p.display().to_string(),
        }
    }

    /// Writes `bytes`: to stdout (refusing binary data on a terminal), or to a temporary file
    /// in the target folder that is then renamed into place, so a failure never leaves a partial
    /// file. An existing file is replaced only with `force`.
    pub fn write(&self, bytes: &[u8], force: bool) -> Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                if out.is_terminal() {
                    return Err(Error::Usage(
                        "refusing to write binary data to a terminal: redirect it or use -o FILE"
                            .into(),
                    ));
                }
                out.write_all(bytes)
                    .and_then(|_| out.flush())
                    .map_err(|e| Error::io("<stdout>", e))
            }
            Output::File(path) => write_file_atomic(path, bytes, force),
        }
    }
}

/// Errors if `path` exists and `force` is not set (checked early, before any work is done).
pub fn check_overwrite(out: &Output, force: bool) -> Result<()> {
    if let Output::File(p) = out {
        if !force && p.exists() {
            return Err(Error::Usage(format!(
                "{} exists (use --force to overwrite)",
                p.display()
            )));
        }
    }
    Ok(())
}

pub fn write_file_atomic(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    use std::os::unix::fs::PermissionsExt;
    // Ordinary file permissions (the temp file would otherwise keep its private 0600).
    let mode = std::fs::Permissions::from_mode(0o644);
    let mut tmp = tempfile::Builder::new()
        .prefix(".llif-tmp-")
        .permissions(mode)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path().to_path_buf(), e))?;
    if force {
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    } else {
        // Atomic no-clobber: fails if the file appeared since the early check.
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage(format!(
                    "{} exists (use --force to overwrite)",
                    path.display()
                ))
            } else {
                Error::io(path, e.error)
            }
        })?;
    }
    Ok(())
}

/// The output of a command that turns INPUT into a file of another kind: `-o -` or an input of
/// `-` means stdout; no `-o` means INPUT with extension `default_ext`.
pub fn choose_output(output: Option<&Path>, input: &Path, default_ext: &str) -> Output {
    match output {
        Some(p) if p == Path::new("-") => Output::Stdout,
        Some(p) => Output::File(p.to_path_buf()),
        None if input == Path::new("-") => Output::Stdout,
        None => Output::File(input.with_extension(default_ext)),
    }
}
