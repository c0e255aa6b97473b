//! Records what the binary was built for, for `mnist-mlp info`.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=MNIST_MLP_TARGET={target}");
    // The flags from .cargo/config.toml or RUSTFLAGS (e.g. -C target-cpu=cortex-a53), 0x1f-separated.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default().replace('\x1f', " ");
    println!("cargo:rustc-env=MNIST_MLP_RUSTFLAGS={flags}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}
