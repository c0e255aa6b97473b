//! What `mnist-mlp info` reports: the build target, the CPU and its features as detected at
//! run time, the cores, the GEMM kernel the products run on, and the page size.
//!
//! Reading only: nothing here changes how the program runs. The kernel name is the one the
//! GEMM module selected, so it names the code that really runs.

use std::fmt;

/// Facts about the machine and the build.
#[derive(Clone, Debug)]
pub struct SystemInfo {
    /// Target triple the binary was built for.
    pub target: &'static str,
    /// Extra compiler flags of the build (e.g. `-C target-cpu=cortex-a53`).
    pub rustflags: &'static str,
    /// CPU model(s) from `/proc/cpuinfo`.
    pub cpu: String,
    /// SIMD features the program checks for, and whether this CPU has them.
    pub features: Vec<(&'static str, bool)>,
    /// Cores available to this process.
    pub cores: usize,
    /// The f32 GEMM micro-kernel the products run on (see [`crate::gemm::kernel_name`]).
    pub gemm_kernel: &'static str,
    /// Memory page size in bytes.
    pub page_size: usize,
}

impl SystemInfo {
    /// Detects everything now.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (features, gemm_kernel) = (simd(), crate::gemm::kernel_name());
        SystemInfo {
            target: env!("MNIST_MLP_TARGET"),
            rustflags: env!("MNIST_MLP_RUSTFLAGS"),
            cpu: cpu_model(&cpuinfo),
            features,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gemm_kernel,
            page_size: page_size(),
        }
    }
}

impl fmt::Display for SystemInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = if self.rustflags.trim().is_empty() {
            "(none)"
        } else {
            self.rustflags.trim()
        };
        writeln!(f, "mnist-mlp {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(f, "build target:  {}", self.target)?;
        writeln!(f, "build flags:   {flags}")?;
        writeln!(f, "cpu:           {}", self.cpu)?;
        let feats: Vec<String> = self
            .features
            .iter()
            .map(|(n, on)| format!("{n} {}", if *on { "yes" } else { "no" }))
            .collect();
        writeln!(f, "cpu features:  {}", feats.join(", "))?;
        writeln!(f, "cores:         {}", self.cores)?;
        writeln!(f, "gemm kernel:   {}", self.gemm_kernel)?;
        write!(f, "page size:     {} bytes", self.page_size)
    }
}

/// `model name` on x86; on Arm, the core types from `CPU part` (e.g. `4× Cortex-A53`).
fn cpu_model(cpuinfo: &str) -> String {
    let field = |line: &str, key: &str| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    };
    if let Some(name) = cpuinfo.lines().find_map(|l| field(l, "model name")) {
        return name;
    }
    let mut parts: Vec<(String, usize)> = Vec::new();
    for part in cpuinfo.lines().filter_map(|l| field(l, "CPU part")) {
        let name = match part.as_str() {
            "0xd03" => "Cortex-A53".to_string(),
            "0xd04" => "Cortex-A35".to_string(),
            "0xd05" => "Cortex-A55".to_string(),
            "0xd07" => "Cortex-A57".to_string(),
            "0xd08" => "Cortex-A72".to_string(),
            "0xd09" => "Cortex-A73".to_string(),
            "0xd0b" => "Cortex-A76".to_string(),
            other => format!("Arm part {other}"),
        };
        match parts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => parts.push((name, 1)),
        }
    }
    if parts.is_empty() {
        return "unknown".into();
    }
    parts
        .iter()
        .map(|(n, c)| format!("{c}× {n}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(target_arch = "x86_64")]
fn simd() -> Vec<(&'static str, bool)> {
    vec![
        ("avx", is_x86_feature_detected!("avx")),
        ("avx2", is_x86_feature_detected!("avx2")),
        ("fma", is_x86_feature_detected!("fma")),
        ("avx512f", is_x86_feature_detected!("avx512f")),
    ]
}

#[cfg(target_arch = "aarch64")]
fn simd() -> Vec<(&'static str, bool)> {
    use std::arch::is_aarch64_feature_detected;
    vec![
        ("neon/asimd", is_aarch64_feature_detected!("neon")),
        ("fp16", is_aarch64_feature_detected!("fp16")),
        ("dotprod", is_aarch64_feature_detected!("dotprod")),
    ]
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd() -> Vec<(&'static str, bool)> {
    Vec::new()
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant; it has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_core_types_are_counted() {
        let a53 = "processor\t: 0\nCPU part\t: 0xd03\n\nprocessor\t: 1\nCPU part\t: 0xd03\n";
        assert_eq!(cpu_model(a53), "2× Cortex-A53");
        let qm = format!("{a53}CPU part\t: 0xd08\n");
        assert_eq!(cpu_model(&qm), "2× Cortex-A53 + 1× Cortex-A72");
        assert_eq!(
            cpu_model("model name\t: Intel(R) Xeon(R)\n"),
            "Intel(R) Xeon(R)"
        );
        assert_eq!(cpu_model(""), "unknown");
    }

    #[test]
    fn detect_reports_this_machine() {
        let info = SystemInfo::detect();
        assert!(info.cores >= 1 && info.page_size >= 4096 && info.page_size.is_power_of_two());
        assert!(
            info.target.contains(std::env::consts::ARCH),
            "{}",
            info.target
        );
        assert!(info.to_string().contains("gemm kernel:"));
    }
}
