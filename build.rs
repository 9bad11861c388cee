//! Builds the XDP sink's skeleton from bpf/ when the `sink` feature is on.
//! Without it (the sender alone) nothing is built and clang is not needed.

fn main() {
    #[cfg(feature = "sink")]
    sink::build();
}

#[cfg(feature = "sink")]
mod sink {
    use std::path::PathBuf;

    use libbpf_cargo::SkeletonBuilder;

    const SRC: &str = "bpf/spead_sink.bpf.c";

    pub fn build() {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
            .join("spead_sink.skel.rs");
        // linux/*.h include asm/*.h, which Debian keeps under the target's
        // multiarch directory.
        let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets the target arch");
        let multiarch = format!("/usr/include/{arch}-linux-gnu");
        SkeletonBuilder::new()
            .source(SRC)
            .clang_args(["-I", multiarch.as_str(), "-O2", "-Wall"])
            .build_and_generate(&out)
            .unwrap_or_else(|e| panic!("building {SRC} (needs clang and libelf): {e}"));
        println!("cargo:rerun-if-changed={SRC}");
    }
}
