//! Records what the binary was built for, for `mnist-mlp info`.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=MNIST_MLP_TARGET={target}");
    // The code-generation flags that matter on the board (-C target-cpu=…, -C target-feature=…)
    // from .cargo/config.toml or RUSTFLAGS. Only those: other flags (Yocto's -L and
    // --remap-path-prefix) carry build-host paths that must not end up in the binary.
    let encoded = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let mut kept = Vec::new();
    let mut args = encoded.split('\x1f').filter(|a| !a.is_empty());
    while let Some(arg) = args.next() {
        let codegen = match arg {
            "-C" => args.next().unwrap_or(""),
            a => a.strip_prefix("-C").unwrap_or(""),
        };
        if codegen.starts_with("target-cpu=") || codegen.starts_with("target-feature=") {
            kept.push(format!("-C {codegen}"));
        }
    }
    println!("cargo:rustc-env=MNIST_MLP_RUSTFLAGS={}", kept.join(" "));

    // AVX-512 intrinsics are stable from Rust 1.89; older compilers (1.75, Yocto scarthgap)
    // build without the AVX-512 kernel. Cargo 1.80+ checks cfg names and must be told this one;
    // older ones warn about the line, so it is printed only for them.
    let minor = rustc_minor().unwrap_or(0);
    if minor >= 80 {
        println!("cargo:rustc-check-cfg=cfg(mnist_mlp_avx512)");
    }
    if minor >= 89 {
        println!("cargo:rustc-cfg=mnist_mlp_avx512");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}

/// The minor version of the compiler building the crate (`rustc 1.N.p …`).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
