//! Process-level set-up of libtorch: optional CUDA, optional tcmalloc.

use std::sync::Once;

/// Loads `libtorch_cuda.so` when it can be loaded, so CUDA registers with libtorch before the
/// first tch call; without it llif runs on CPU. Call once at start-up (the CLI does).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let mut candidates: Vec<String> = Vec::new();
        if let Ok(dir) = std::env::var("LIBTORCH") {
            candidates.push(format!("{dir}/lib/libtorch_cuda.so"));
        }
        if let Some(dir) = option_env!("LLIF_LIBTORCH_LIB") {
            candidates.push(format!("{dir}/libtorch_cuda.so"));
        }
        candidates.push("libtorch_cuda.so".into());
        for path in candidates {
            let Ok(c) = std::ffi::CString::new(path) else {
                continue;
            };
            // SAFETY: dlopen with a valid C string; the handle is intentionally leaked so the
            // library stays loaded for the life of the process.
            let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if !handle.is_null() {
                break;
            }
        }
    });
}

/// Whether libtorch sees a CUDA device.
pub fn cuda_available() -> bool {
    init();
    tch::Cuda::is_available()
}

/// Path of tcmalloc when installed (Debian `libtcmalloc-minimal4`).
pub fn tcmalloc_path() -> Option<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib64/libtcmalloc_minimal.so.4",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// Re-executes the current process with tcmalloc preloaded, if it is installed and not yet in
/// use (libtorch's CPU training runs about 2x faster with it). Returns only if no re-exec
/// happened. `LLIF_NO_TCMALLOC=1` turns this off.
pub fn reexec_with_tcmalloc() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("LLIF_NO_TCMALLOC").is_some() {
        return;
    }
    let Some(lib) = tcmalloc_path() else { return };
    let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
    if preload.contains("tcmalloc") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let new_preload = if preload.is_empty() {
        lib.to_string()
    } else {
        format!("{lib}:{preload}")
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("LD_PRELOAD", new_preload)
        .exec();
    eprintln!("llif: note: could not re-run with tcmalloc ({err}); continuing without it");
}

/// Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16). Without it libtorch falls
/// back to a reference GEMM for bf16 that is many times slower than its f32 one (seen: an
/// AMD EPYC with AVX2 only ran `--bf16` training at a small fraction of the f32 speed).
pub fn cpu_has_fast_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
