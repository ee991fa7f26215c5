//! Bakes the location of libtorch into the worker binary (rpath), so `worker` runs without
//! LD_LIBRARY_PATH. torch-sys finds libtorch through `LIBTORCH`, which `.cargo/config.toml`
//! sets after `deploy/setup.sh`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = PathBuf::from(libtorch).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    // A relocated install (container image, cluster module) ships libtorch beside the binary.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib");
}
