//! Gives the library's tests, examples and benches an rpath to libtorch (feature `torch`), so they
//! run without `LD_LIBRARY_PATH`. The `llif-train` program has its own (`train/build.rs`).
//!
//! torch-sys links libtorch dynamically but sets no rpath on the final binary; it exports the
//! library folder to direct dependents as `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"` key).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // Expose it to the crate too, so the runtime can look for libtorch_cuda.so beside it.
        println!("cargo:rustc-env=LLIF_LIBTORCH_LIB={lib}");
    }
}
