//! Gives `llif-train` an rpath to libtorch, so it runs without `LD_LIBRARY_PATH`.
//!
//! torch-sys links libtorch dynamically but sets no rpath on the final binary; it exports the
//! library folder to direct dependents as `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"` key).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
