//! Link options of the `podrun` binary.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Packed relative relocations (DT_RELR, glibc 2.36 and later): at start the
        // dynamic loader reads a few kilobytes of them instead of half a megabyte of
        // `.rela.dyn`, which every podrun process, each proxy sidecar included, would
        // otherwise keep resident.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
