//! Soak test: a long `train --arch relu` run on Fashion-MNIST with a checkpoint every 500
//! iterations, watched from outside through `/proc/PID` every 100 ms. Memory must stay flat
//! once training has settled, no file descriptor or thread may leak, the checkpoint directory
//! must end up holding only the checkpoint and its lock file, and the final checkpoint must
//! load and give the run's test accuracy.
//!
//! Ignored by default (it trains for a minute or more); `scripts/soak.sh [EPOCHS]` runs it
//! and prints the RSS curve. `MNIST_MLP_SOAK_EPOCHS` sets the length (default 20, at least 3:
//! flatness is judged from the end of epoch 2). `MNIST_MLP_TEST_SCALE=reduced` (emulation)
//! trains on the first 12,000 images and checkpoints every 50 iterations instead, so a
//! short run still crosses several checkpoints. Linux only: it reads `/proc`.
//!
//! What "flat" means here: the peak RSS of the whole run (`ru_maxrss` once it is reaped, the
//! kernel's `VmHWM` at its very end: after 18 more epochs, 17 more periodic checkpoints, the
//! final checkpoint and the test evaluation) is at most `VmHWM` at the end of epoch 2 plus
//! [`RSS_TOLERANCE`] (2 MiB). The baseline includes a checkpoint save (iteration 500), so later
//! saves are compared like with like. A save writes each tensor from where it lives and the
//! test evaluation runs in the training buffers, so neither adds more than a write buffer: the
//! run's peak is its training floor (67 MiB here, 64 MiB of it the decompressed data set), and
//! a leak raises that floor, and the peak with it.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mnist_mlp::model_file;

/// Allowed growth of RSS after epoch 2. Large enough for what may legitimately appear late
/// without any leak: pages of the binary's code first run at the end (the whole stripped
/// binary is about 2 MiB), a few pages of allocator bookkeeping, and the kernel's per-CPU
/// batching of RSS counts (a few hundred KiB either way; runs grew by 0 to 0.23 MiB). Small
/// enough that a leaked checkpoint's worth of memory (6.5 MiB for this network) fails at once,
/// and so does any steady leak above about 250 bytes per iteration over 20 epochs
/// (tests/alloc.rs pins the allocations of an iteration exactly, for smaller ones).
const RSS_TOLERANCE: u64 = 2 << 20;

/// Time between two samples of `/proc/PID`.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Fashion-MNIST's training set.
const FULL_TRAIN: usize = 60_000;

/// One look at the child.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Seconds since the child started.
    t: f64,
    /// Iterations finished (from the progress lines read so far).
    done: usize,
    /// `VmRSS`, `VmHWM`, `RssAnon`, `RssFile`, in bytes.
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    /// Entries of `/proc/PID/fd`.
    fds: usize,
    /// `Threads`.
    threads: usize,
    /// The checkpoint file's identity (inode, mtime in ns), if it exists: changes at each save.
    checkpoint: Option<(u64, i64)>,
}

/// `/proc/PID/status` and `/proc/PID/fd`, or `None` once the process is gone (a zombie has
/// no memory lines).
fn sample(pid: u32, t: f64, done: usize, ck: &Path) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample {
        t,
        done,
        rss: field("VmRSS:")? * 1024,
        hwm: field("VmHWM:")? * 1024,
        anon: field("RssAnon:")? * 1024,
        file: field("RssFile:")? * 1024,
        fds,
        threads: field("Threads:")? as usize,
        checkpoint: std::fs::metadata(ck)
            .ok()
            .map(|m| (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec())),
    })
}

/// The peak RSS of the largest child this process has reaped, in bytes.
///
/// This is `ru_maxrss` of `RUSAGE_CHILDREN`, which Linux fills from the same counter as
/// `VmHWM` once a child is gone. Read just after the run is reaped (the test starts no other
/// process before it), it is the run's peak to its very end: the final checkpoint and the
/// test evaluation included, which the 100 ms samples may miss entirely (on a fast machine
/// the last iterations, the save and the evaluation fit between two samples).
fn children_peak_rss() -> u64 {
    // SAFETY: `rusage` is plain integers, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes for the length of the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    usage.ru_maxrss as u64 * 1024
}

/// Every sample as CSV (sizes in KiB), for plotting.
fn write_trace(path: &Path, samples: &[Sample]) {
    let mut csv =
        String::from("t_s,iteration,vmrss_kib,vmhwm_kib,rssanon_kib,rssfile_kib,fds,threads\n");
    for s in samples {
        csv += &format!(
            "{:.3},{},{},{},{},{},{},{}\n",
            s.t,
            s.done,
            s.rss >> 10,
            s.hwm >> 10,
            s.anon >> 10,
            s.file >> 10,
            s.fds,
            s.threads
        );
    }
    std::fs::write(path, csv).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// One line of the curve; `range` is the lowest and highest VmRSS seen during the epoch.
fn row(label: &str, s: &Sample, range: Option<(u64, u64)>) -> String {
    let range = range.map_or(String::new(), |(lo, hi)| {
        format!("{:.1}-{:.1}", mib(lo), mib(hi))
    });
    format!(
        "{label:>10} {:>6} {:>7.1} {:>8.1} {range:>11} {:>8.1} {:>8.1} {:>8.1} {:>4} {:>4}",
        s.done,
        s.t,
        mib(s.rss),
        mib(s.hwm),
        mib(s.anon),
        mib(s.file),
        s.fds,
        s.threads
    )
}

/// The length of the soak in epochs: `MNIST_MLP_SOAK_EPOCHS`, default 20.
fn epochs() -> usize {
    let epochs = match std::env::var("MNIST_MLP_SOAK_EPOCHS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("MNIST_MLP_SOAK_EPOCHS must be a number, not {v:?}")),
        Err(_) => 20,
    };
    assert!(
        epochs >= 3,
        "MNIST_MLP_SOAK_EPOCHS must be at least 3: flatness is judged from the end of epoch 2"
    );
    epochs
}

/// The run under test: its settings and where it writes.
struct Soak {
    epochs: usize,
    n_train: usize,
    batch: usize,
    /// Iterations of the whole run.
    total: usize,
    checkpoint_every: usize,
    /// The data set (a subset of Fashion-MNIST when reduced, kept alive here).
    data: std::path::PathBuf,
    _subset: Option<tempfile::TempDir>,
    ck_dir: tempfile::TempDir,
    ck: std::path::PathBuf,
    _other: tempfile::TempDir,
    metrics: std::path::PathBuf,
}

/// What watching the run saw.
struct Watched {
    samples: Vec<Sample>,
    status: std::process::ExitStatus,
    /// The run's peak RSS to its very end ([`children_peak_rss`]).
    exit_hwm: u64,
    wall: Duration,
    /// Its stdout lines, and its stderr.
    lines: Vec<String>,
    err: String,
}

impl Soak {
    fn new() -> Soak {
        let epochs = epochs();
        let fashion = shared_data("fashion-mnist");
        let (subset, n_train, checkpoint_every) = if reduced() {
            (Some(subset(&fashion, 12_000, 2_000)), 12_000, 50)
        } else {
            (None, FULL_TRAIN, 500)
        };
        let data = subset.as_ref().map_or(fashion, |d| d.path().to_path_buf());
        let batch = 128;
        let (ck_dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        Soak {
            epochs,
            n_train,
            batch,
            total: (epochs * n_train).div_ceil(batch),
            checkpoint_every,
            data,
            _subset: subset,
            ck: ck_dir.path().join("ck.safetensors"),
            ck_dir,
            metrics: other.path().join("metrics.csv"),
            _other: other,
        }
    }

    /// Iterations finished at the end of epoch `e` (an epoch may end inside a batch).
    fn epoch_end(&self, e: usize) -> usize {
        (e * self.n_train).div_ceil(self.batch)
    }

    /// Whether sample `s` was taken during epoch `e`.
    fn during(&self, s: &Sample, e: usize) -> bool {
        s.done > self.epoch_end(e - 1) && s.done <= self.epoch_end(e)
    }

    /// Runs the training, sampling `/proc/PID` every [`SAMPLE_EVERY`] until it exits.
    fn watch(&self) -> Watched {
        let args = [
            "train".to_string(),
            "--data".into(),
            self.data.display().to_string(),
            "--arch".into(),
            "relu".into(),
            "--epochs".into(),
            self.epochs.to_string(),
            "--checkpoint".into(),
            self.ck.display().to_string(),
            "--checkpoint-every".into(),
            self.checkpoint_every.to_string(),
            "--log-every".into(),
            "1".into(),
            "--metrics".into(),
            self.metrics.display().to_string(),
        ];
        eprintln!(
            "soak: mnist-mlp {} ({} iterations)",
            args.join(" "),
            self.total
        );
        let started = Instant::now();
        let mut child = bin()
            .args(&args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mnist-mlp");
        let pid = child.id();

        // The clock of the run: every progress line ("Iteration i ...", printed after step i)
        // advances the count of finished iterations.
        let done = Arc::new(AtomicUsize::new(0));
        let stdout = child.stdout.take().unwrap();
        let out_reader = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                for line in BufReader::new(stdout).lines() {
                    let line = line.unwrap();
                    if let Some(i) = line
                        .strip_prefix("Iteration ")
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        done.store(i + 1, Ordering::SeqCst);
                    }
                    lines.push(line);
                }
                lines
            })
        };
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).unwrap();
            s
        });

        let mut samples: Vec<Sample> = Vec::new();
        let (status, exit_hwm) = loop {
            let t = started.elapsed().as_secs_f64();
            if let Some(s) = sample(pid, t, done.load(Ordering::SeqCst), &self.ck) {
                samples.push(s);
            }
            if let Some(status) = child.try_wait().unwrap() {
                break (status, children_peak_rss());
            }
            std::thread::sleep(SAMPLE_EVERY);
        };
        Watched {
            samples,
            status,
            exit_hwm,
            wall: started.elapsed(),
            lines: out_reader.join().unwrap(),
            err: err_reader.join().unwrap(),
        }
    }

    /// The last sample taken by the end of epoch `e`.
    fn after_epoch<'a>(&self, w: &'a Watched, e: usize) -> Option<&'a Sample> {
        w.samples.iter().rev().find(|s| s.done <= self.epoch_end(e))
    }

    /// The run exited cleanly with one progress line per iteration; returns the test accuracy
    /// it printed last.
    fn check_the_run_completed(&self, w: &Watched) -> String {
        assert!(
            w.status.success(),
            "mnist-mlp exited with {}: {}",
            w.status,
            w.err
        );
        assert!(!w.err.contains("panicked"), "{}", w.err);
        let progress = w
            .lines
            .iter()
            .filter(|l| l.starts_with("Iteration "))
            .count();
        assert_eq!(
            progress, self.total,
            "one progress line per iteration: {}",
            w.err
        );
        w.lines
            .last()
            .and_then(|l| l.strip_prefix("Accuracy on test set: "))
            .unwrap_or_else(|| panic!("no test accuracy at the end: {:?}", w.lines.last()))
            .to_string()
    }

    /// The curve on stderr: start, end of each epoch, the last sample, and the peak at exit.
    fn print_the_curve(&self, w: &Watched, accuracy: &str) {
        eprintln!(
            "\nsoak: {} samples every {} ms, {:.1} s wall, test accuracy {accuracy}",
            w.samples.len(),
            SAMPLE_EVERY.as_millis(),
            w.wall.as_secs_f64()
        );
        eprintln!(
            "{:>10} {:>6} {:>7} {:>8} {:>11} {:>8} {:>8} {:>8} {:>4} {:>4}",
            "", "iter", "t s", "VmRSS", "in epoch", "VmHWM", "RssAnon", "RssFile", "fds", "thr"
        );
        eprintln!(
            "{:>10} {:>6} {:>7} {:>8} {:>11} {:>8} {:>8} {:>8}",
            "", "", "", "MiB", "MiB", "MiB", "MiB", "MiB"
        );
        let first = w.samples.first().expect("no sample of the running process");
        eprintln!("{}", row("start", first, None));
        for e in 1..=self.epochs {
            let during = w.samples.iter().filter(|s| self.during(s, e));
            let range = during.fold(None, |r: Option<(u64, u64)>, s| {
                Some(r.map_or((s.rss, s.rss), |(lo, hi)| (lo.min(s.rss), hi.max(s.rss))))
            });
            if let Some(s) = self.after_epoch(w, e) {
                eprintln!("{}", row(&format!("epoch {e}"), s, range));
            }
        }
        eprintln!("{}", row("last", w.samples.last().unwrap(), None));
        eprintln!(
            "{:>10} {:>6} {:>7.1} {:>8} {:>11} {:>8.1}",
            "exit",
            self.total,
            w.wall.as_secs_f64(),
            "",
            "",
            mib(w.exit_hwm)
        );
    }

    /// Memory is flat from the end of epoch 2 on: the peak then (which includes the first
    /// checkpoint save) is the peak of the whole run.
    fn check_memory_stays_flat(&self, w: &Watched) {
        // Enough samples to judge: the run was seen in every epoch.
        for e in 1..=self.epochs {
            assert!(
                w.samples.iter().any(|s| self.during(s, e)),
                "no sample during epoch {e}: the run was too fast to watch"
            );
        }
        // The peak at exit comes from the same counter as the samples' VmHWM, so it is at
        // least the highest one seen, up to the kernel's per-CPU batching of RSS counts (a few
        // hundred KiB). This catches a unit or field gone wrong.
        let sampled_hwm = w.samples.iter().map(|s| s.hwm).max().unwrap();
        assert!(
            w.exit_hwm + (1 << 20) >= sampled_hwm,
            "peak RSS at exit ({} KiB) far below the highest sampled VmHWM ({} KiB)",
            w.exit_hwm >> 10,
            sampled_hwm >> 10
        );
        let peak = w.exit_hwm.max(sampled_hwm);
        assert!(
            self.checkpoint_every < self.epoch_end(2),
            "the baseline must include a checkpoint save"
        );
        let base = *self.after_epoch(w, 2).unwrap();
        let last = w.samples.last().unwrap();
        let later = w.samples.iter().filter(|s| s.done > base.done);
        let max_rss = later.max_by_key(|s| s.rss).unwrap();
        eprintln!(
            "soak: after epoch 2: VmHWM {:.2} -> {:.2} MiB by exit (+{:.2}, tolerance {:.0}); VmRSS max \
             {:.2} MiB (iteration {}); RssAnon {:.2} -> {:.2} MiB, RssFile {:.2} -> {:.2} MiB (last sample)",
            mib(base.hwm),
            mib(peak),
            mib(peak.saturating_sub(base.hwm)),
            mib(RSS_TOLERANCE),
            mib(max_rss.rss),
            max_rss.done,
            mib(base.anon),
            mib(last.anon),
            mib(base.file),
            mib(last.file),
        );
        if let Ok(path) = std::env::var("MNIST_MLP_SOAK_CSV") {
            write_trace(Path::new(&path), &w.samples);
            eprintln!("soak: every sample written to {path}");
        }
        assert!(
            peak <= base.hwm + RSS_TOLERANCE,
            "peak RSS grew after epoch 2: {:.2} MiB at its end, {:.2} MiB at the exit",
            mib(base.hwm),
            mib(peak)
        );
    }

    /// No descriptor or thread leaks: once training runs, the counts stay those of its first
    /// iterations, except one file open for a moment while a checkpoint is written (the
    /// temporary file, then the directory for its fsync).
    fn check_no_file_or_thread_leaks(&self, w: &Watched) {
        let running: Vec<&Sample> = w.samples.iter().filter(|s| s.done >= 1).collect();
        let fds0 = running.first().expect("no sample while training").fds;
        let threads0 = running.first().unwrap().threads;
        let fds: BTreeSet<usize> = running.iter().map(|s| s.fds).collect();
        let threads: BTreeSet<usize> = running.iter().map(|s| s.threads).collect();
        eprintln!("soak: fds while training {fds:?}, threads {threads:?}");
        for s in &running {
            assert!(
                s.fds <= fds0 + 1,
                "{} open files at iteration {}, {fds0} at the start of training",
                s.fds,
                s.done
            );
            assert!(
                s.threads <= threads0,
                "{} threads at iteration {}, {threads0} at the start of training",
                s.threads,
                s.done
            );
        }
        // A leaked descriptor would also keep the count up for good: in the last epoch it is
        // back at (or, once the run starts closing files, below) its start value.
        let last_epoch_fds = running
            .iter()
            .filter(|s| s.done > self.epoch_end(self.epochs - 1))
            .map(|s| s.fds)
            .min()
            .unwrap();
        assert!(
            last_epoch_fds <= fds0,
            "open files in the last epoch never came back to {fds0}: at least {last_epoch_fds}"
        );
    }

    /// The checkpoints were really written as the run went (each save renames a new file over
    /// the old one), not only at the end; the directory then holds the checkpoint and its lock
    /// file (kept by design: the lock is the flock on it, which dies with the process), and no
    /// temporary file.
    fn check_checkpoints_were_written_as_it_went(&self, w: &Watched) {
        let mut versions: Vec<(usize, (u64, i64))> = Vec::new();
        for s in &w.samples {
            if let Some(v) = s.checkpoint {
                if versions.last().map_or(true, |&(_, last)| last != v) {
                    versions.push((s.done, v));
                }
            }
        }
        let periodic = (self.total - 1) / self.checkpoint_every;
        eprintln!(
            "soak: checkpoint replaced {} times, first seen at iterations {:?} ({periodic} periodic saves expected, then the final one)",
            versions.len(),
            versions.iter().map(|v| v.0).collect::<Vec<_>>()
        );
        assert!(
            versions.len() >= periodic,
            "saw {} versions of the checkpoint, expected at least {periodic}",
            versions.len()
        );
        let mut names: Vec<String> = std::fs::read_dir(self.ck_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["ck.safetensors", "ck.safetensors.lock"],
            "left in the checkpoint directory"
        );
    }

    /// The final checkpoint is complete: the whole state of the last iteration, and `eval` on
    /// it gives the accuracy the run printed. The metrics file recorded every iteration and the
    /// test accuracy.
    fn check_the_final_checkpoint_and_metrics(&self, accuracy: &str) {
        let f = model_file::load(&self.ck, &mnist_mlp::checkpoint::EXTRAS)
            .unwrap_or_else(|e| panic!("the final checkpoint does not load: {e}"));
        assert_eq!(f.metadata["kind"], "checkpoint");
        assert_eq!(f.metadata["iteration"], self.total.to_string());
        let data_arg = self.data.display().to_string();
        let ck = self.ck.to_str().unwrap();
        let eval = run(&["eval", "--model", ck, "--data", &data_arg]);
        assert!(eval.status.success(), "eval: {}", common::stderr(&eval));
        let eval_out = common::stdout(&eval);
        assert!(
            eval_out
                .lines()
                .next()
                .is_some_and(|l| l == format!("Accuracy on test set: {accuracy}")),
            "eval of the checkpoint disagrees with the run ({accuracy}): {eval_out}"
        );
        let csv = std::fs::read_to_string(&self.metrics).unwrap();
        assert_eq!(csv.lines().count(), 1 + self.total + 1, "metrics rows");
    }
}

/// One long run, watched; each check names what it found broken.
#[test]
#[ignore = "long: run by scripts/soak.sh"]
fn long_run_keeps_memory_flat_and_leaks_nothing() {
    let soak = Soak::new();
    let watched = soak.watch();
    let accuracy = soak.check_the_run_completed(&watched);
    soak.print_the_curve(&watched, &accuracy);
    soak.check_memory_stays_flat(&watched);
    soak.check_no_file_or_thread_leaks(&watched);
    soak.check_checkpoints_were_written_as_it_went(&watched);
    soak.check_the_final_checkpoint_and_metrics(&accuracy);
}
