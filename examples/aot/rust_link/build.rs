//! Links demo.o (from the directory in `FERRAX_AOT_DIR`) and libm, and copies the generated
//! binding demo.rs into `OUT_DIR` for `include!`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=FERRAX_AOT_DIR");
    let dir = PathBuf::from(
        std::env::var("FERRAX_AOT_DIR")
            .expect("set FERRAX_AOT_DIR to the directory holding demo.o and demo.rs"),
    );
    let object = dir.join("demo.o");
    let binding = dir.join("demo.rs");
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rerun-if-changed={}", binding.display());
    println!("cargo:rustc-link-arg={}", object.display());
    println!("cargo:rustc-link-lib=m");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy(&binding, out.join("demo.rs")).expect("copy the binding");
}
