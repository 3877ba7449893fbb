//! Input and output for the CLI: `-` for stdin/stdout, bounded reads, atomic writes that leave
//! nothing behind (not even on SIGINT/SIGTERM), no overwriting without `--force`, and never of
//! anything but a regular file.

use std::ffi::CString;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};

use llif::format::archive::{entry_file_name, is_archive, ArchiveIndex};
use llif::format::{Header, MAX_HEADER_BYTES};
use llif::{Error, Limits, ModelSet, Result};

/// Opens an input: a path, or `-` for standard input.
fn open_input(path: &Path) -> Result<Box<dyn Read>> {
    if path == Path::new("-") {
        Ok(Box::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Box::new(std::io::BufReader::new(f)))
    }
}

fn display(path: &Path) -> PathBuf {
    if path == Path::new("-") {
        PathBuf::from("<stdin>")
    } else {
        path.to_path_buf()
    }
}

/// Reads at most `max` bytes of `r`; an input with more is refused with `too_long`.
fn read_at_most(
    r: &mut dyn Read,
    max: u64,
    path: &Path,
    too_long: impl FnOnce() -> Error,
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(display(path), e))?;
    if buf.len() as u64 > max {
        return Err(too_long());
    }
    Ok(buf)
}

/// Reads an image file for `compress`, at most what an image within `limits` plausibly takes:
/// 32 bytes a pixel (ASCII PPM spends about 12) and 64 MiB for metadata. A file over that is
/// refused with the limit's name, so a larger `--max-pixels` lets it through.
pub fn read_image_input(path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let max = limits
        .max_pixels
        .saturating_mul(32)
        .saturating_add(64 << 20);
    read_at_most(&mut *open_input(path)?, max, path, || {
        Error::LimitExceeded(format!(
            "{}: the file is larger than any image within the limits ({} pixels) can be",
            display(path).display(),
            limits.max_pixels
        ))
    })
}

/// A `.llif` input: an image file, or an archive.
pub enum LlifInput {
    Image(Header, Vec<u8>),
    /// The archive's bytes: all of them, or with `header_only` its index alone.
    Archive(Vec<u8>),
}

/// Reads a `.llif` input, header first: the magic and the header (an archive's whole index) are
/// checked against `limits` before anything else is read, and then no more than the payload
/// bytes the header allows (the archive's index names). So `/dev/zero` or a gigabyte of garbage
/// on stdin fails after a few bytes. With `header_only`, no payload is read at all.
///
/// With `models`, a file (or an archive entry) whose model is not among them is refused after
/// its header (the archive's index), before its payload is read.
pub fn read_llif_input(
    path: &Path,
    limits: &Limits,
    header_only: bool,
    models: Option<&ModelSet>,
) -> Result<LlifInput> {
    let mut r = open_input(path)?;
    let mut buf = Vec::with_capacity(MAX_HEADER_BYTES);
    (&mut r)
        .take(MAX_HEADER_BYTES as u64)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(display(path), e))?;
    if is_archive(&buf) {
        return read_archive(&mut r, buf, path, limits, header_only, models);
    }
    let parsed = Header::parse(&buf, limits)?;
    let header = parsed.header;
    check_model(&header, models)?;
    if header_only {
        return Ok(LlifInput::Image(header, buf));
    }
    let header_len = buf.len() - parsed.payload.len();
    let max_total = header.max_payload_bytes().saturating_add(header_len as u64);
    let rest_max = max_total.saturating_sub(buf.len() as u64);
    let rest = read_at_most(&mut r, rest_max, path, || {
        Error::CorruptPayload(format!(
            "{}: longer than any valid file of a {}x{} {} image",
            display(path).display(),
            header.width,
            header.height,
            header.layout
        ))
    })?;
    buf.extend_from_slice(&rest);
    Ok(LlifInput::Image(header, buf))
}

/// Reads an archive whose first bytes are in `buf`: its index first, growing the read until
/// the index parses (and is checked), then exactly the payload bytes it names, and one more to
/// tell a longer file. Nothing is read that the index does not account for.
fn read_archive(
    r: &mut dyn Read,
    mut buf: Vec<u8>,
    path: &Path,
    limits: &Limits,
    header_only: bool,
    models: Option<&ModelSet>,
) -> Result<LlifInput> {
    let read_err = |e| Error::io(display(path), e);
    let extent = loop {
        match ArchiveIndex::parse(&buf, limits) {
            Ok(index) => {
                for (i, rec) in index.records.iter().enumerate() {
                    check_model(&rec.header, models).map_err(|e| {
                        e.with_context(&format!("entry {}", entry_file_name(rec.name, i)))
                    })?;
                }
                break (index.index_bytes, index.file_bytes());
            }
            Err(e @ Error::Truncated(_)) => {
                // Doubling keeps the re-parsing linear in the index's size.
                let more = buf.len().max(1 << 16) as u64;
                let before = buf.len();
                (&mut *r)
                    .take(more)
                    .read_to_end(&mut buf)
                    .map_err(read_err)?;
                if buf.len() == before {
                    return Err(e); // the file ends inside its index
                }
            }
            Err(e) => return Err(e),
        }
    };
    let (index_bytes, file_bytes) = extent;
    if header_only {
        buf.truncate(index_bytes);
        return Ok(LlifInput::Archive(buf));
    }
    let rest = file_bytes.saturating_sub(buf.len() as u64);
    (&mut *r)
        .take(rest.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    match (buf.len() as u64).cmp(&file_bytes) {
        std::cmp::Ordering::Less => Err(Error::Truncated("archive payloads")),
        std::cmp::Ordering::Greater => Err(Error::CorruptPayload(format!(
            "{}: longer than its archive index says ({file_bytes} bytes)",
            display(path).display()
        ))),
        std::cmp::Ordering::Equal => Ok(LlifInput::Archive(buf)),
    }
}

/// Errors when `header` needs a family or model that `models` (given) cannot decode with.
fn check_model(header: &Header, models: Option<&ModelSet>) -> Result<()> {
    match models {
        Some(set) => llif::codec::model_for(header, set).map(|_| ()),
        None => Ok(()),
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
    /// file. An existing file is replaced only with `force`, and only if it is a regular file.
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

/// Errors if `path` exists and `force` is not set, or exists and is not a regular file (a
/// symlink, device, folder or pipe is never replaced, even with `force`). Checked early, before
/// any work is done, and again when the file is put in place.
pub fn check_overwrite(out: &Output, force: bool) -> Result<()> {
    match out {
        Output::File(p) => check_target(p, force),
        Output::Stdout => Ok(()),
    }
}

pub fn check_target(path: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
        Ok(m) if !m.file_type().is_file() => Err(Error::Usage(format!(
            "{} exists and is not a regular file (a symlink, device, folder or pipe): llif replaces regular files only",
            path.display()
        ))),
        Ok(_) if !force => Err(Error::Usage(format!(
            "{} exists (use --force to overwrite)",
            path.display()
        ))),
        Ok(_) => Ok(()),
    }
}

/// The temporary file being written, for the signal handler to remove: a leaked `CString`, or
/// null. Only ever one at a time (the CLI writes one output after another).
static PENDING_TEMP: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn remove_temp_and_die(sig: libc::c_int) {
    let p = PENDING_TEMP.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: unlink, signal and raise are async-signal-safe; `p` is null or a valid C string
    // leaked by `TempGuard::new` (never freed while registered).
    unsafe {
        if !p.is_null() {
            libc::unlink(p);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Installs the handlers that remove a pending temporary file on SIGINT, SIGTERM and SIGHUP
/// (then die of the same signal, as the shell expects), and restores the default SIGPIPE so
/// that a closed stdout ends the program quietly instead of with a panic. Call once, first.
pub fn install_signal_handlers() {
    let handler = remove_temp_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing handlers at start-up, before any other thread exists.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // A signal the parent ignores (nohup, `&` in a script) stays ignored.
            if libc::signal(sig, handler) == libc::SIG_IGN {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Registers a temporary file for removal on a signal while it lives.
struct TempGuard;

impl TempGuard {
    fn new(path: &Path) -> TempGuard {
        if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
            let old = PENDING_TEMP.swap(c.into_raw(), Ordering::SeqCst);
            free_c_string(old);
        }
        TempGuard
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        free_c_string(PENDING_TEMP.swap(std::ptr::null_mut(), Ordering::SeqCst));
    }
}

fn free_c_string(p: *mut libc::c_char) {
    if !p.is_null() {
        // SAFETY: every non-null pointer stored in PENDING_TEMP came from CString::into_raw and
        // was swapped out exactly once.
        drop(unsafe { CString::from_raw(p) });
    }
}

pub fn write_file_atomic(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    check_target(path, force)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    use std::os::unix::fs::PermissionsExt;
    // Ordinary file permissions (the temp file would otherwise keep its private 0600).
    let mode = std::fs::Permissions::from_mode(0o644);
    let tmp = tempfile::Builder::new()
        .prefix(".llif-tmp-")
        .permissions(mode)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    // A tuple drops its fields in order: on an error return the file is removed first, and
    // only then unregistered from the signal handler.
    let guard = TempGuard::new(tmp.path());
    let (mut tmp, _guard) = (tmp, guard);
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path().to_path_buf(), e))?;
    pause_for_tests();
    if force {
        // A non-regular file may have appeared since the check; rename would replace it.
        check_target(path, true)?;
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

/// `LLIF_TEST_WRITE_PAUSE_MS=N` holds a written temporary file N ms before it is renamed, so that
/// the tests can signal the program at exactly that moment. Off unless set.
fn pause_for_tests() {
    if let Some(ms) = std::env::var("LLIF_TEST_WRITE_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
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
