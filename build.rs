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
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}
