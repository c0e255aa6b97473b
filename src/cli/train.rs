//! `mnist-mlp train`: opens the data, builds or loads the run, trains, prints the tutorial's
//! lines, saves what was asked.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use mnist_mlp::checkpoint;
use mnist_mlp::data::{locate, Dataset, Split};
use mnist_mlp::fsio::{check_writable, same_file, FileLock};
use mnist_mlp::limits::Limits;
use mnist_mlp::model::{Arch, Mlp};
use mnist_mlp::model_file::{self, join};
use mnist_mlp::train::{Control, Event, Finished, Length, Progress, TrainConfig, Trainer};

use super::args::{TrainArgs, DEFAULT_CHECKPOINT_EVERY, DEFAULT_LOG_EVERY};
use super::{hide_bar, load_model, note_decompressed, set_threads, show_bar, signals, Out};

/// Refuses outputs that would destroy the run's own inputs or each other, before any work:
/// - any output on a data file the run reads (truncating a mapped file kills the run with
///   SIGBUS; replacing it loses the data set);
/// - `--metrics` on any other file named (it is written in place, over a model or checkpoint);
/// - `--save` on `--checkpoint` (the final model would replace the resumable checkpoint).
///
/// `--save` on `--init`/`--resume` and `--checkpoint` on `--resume` are allowed: fine-tuning or
/// resuming in place, and each write replaces the file whole, after it was read.
fn check_no_clobber(a: &TrainArgs) -> Result<()> {
    let outputs = [
        ("--save", &a.save),
        ("--checkpoint", &a.checkpoint),
        ("--metrics", &a.metrics),
    ];
    let outputs = outputs
        .iter()
        .filter_map(|&(flag, p)| Some((flag, p.as_deref()?)));
    for (flag, out) in outputs {
        for split in [Split::Train, Split::Test] {
            let (images, labels) = split.stems();
            for stem in [images, labels] {
                // A data file that cannot be found is reported when the data is opened.
                if let Some(data) = locate(&a.data, stem).ok().filter(|d| same_file(out, d)) {
                    bail!(
                        "{flag} {}: is the data file {}, which this run reads; choose another path",
                        out.display(),
                        data.display()
                    );
                }
            }
        }
    }
    if let Some(metrics) = &a.metrics {
        let others = [
            ("--init", &a.init),
            ("--resume", &a.resume),
            ("--save", &a.save),
            ("--checkpoint", &a.checkpoint),
        ];
        for (flag, other) in others {
            if other.as_deref().is_some_and(|o| same_file(metrics, o)) {
                bail!(
                    "--metrics {}: is the {flag} file too; the CSV would overwrite it",
                    metrics.display()
                );
            }
        }
    }
    if let (Some(save), Some(ck)) = (&a.save, &a.checkpoint) {
        if same_file(save, ck) {
            bail!(
                "--save {} and --checkpoint {} are the same file: the final model would replace \
                 the checkpoint; give them different paths",
                save.display(),
                ck.display()
            );
        }
    }
    Ok(())
}

/// The command that continues an interrupted run from `checkpoint`, complete and ready to
/// paste: the checkpoint holds the run's settings and length; the outputs, data and other
/// options of this invocation are repeated.
fn resume_command(a: &TrainArgs, checkpoint: &Path) -> String {
    let mut words = vec!["mnist-mlp".to_string(), "train".into()];
    let mut flag = |name: &str, value: &std::ffi::OsStr| {
        words.push(name.into());
        words.push(shell_word(&value.to_string_lossy()));
    };
    flag("--resume", checkpoint.as_os_str());
    flag("--data", a.data.as_os_str());
    for (name, path) in [("--save", &a.save), ("--metrics", &a.metrics)] {
        if let Some(p) = path {
            flag(name, p.as_os_str());
        }
    }
    if a.checkpoint_every != DEFAULT_CHECKPOINT_EVERY {
        words.extend(["--checkpoint-every".into(), a.checkpoint_every.to_string()]);
        words.extend([
            "--checkpoint".into(),
            shell_word(&checkpoint.to_string_lossy()),
        ]);
    }
    let mut number = |name: &str, v: String| words.extend([name.to_string(), v]);
    if a.log_every != DEFAULT_LOG_EVERY {
        number("--log-every", a.log_every.to_string());
    }
    if let Some(t) = a.threads {
        number("--threads", t.to_string());
    }
    let (l, d) = (&a.limits, mnist_mlp::limits::Limits::default());
    if l.limits() != d {
        number("--max-images", l.max_images.to_string());
        number("--max-image-side", l.max_image_side.to_string());
        number("--max-file-mib", l.max_file_mib.to_string());
    }
    words.join(" ")
}

/// `s` as one shell word: as it is when it needs no quoting, else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `mnist-mlp train`: checks the command line, opens the data, trains with a progress bar,
/// then reports an interrupted run or the test accuracy, and saves what was asked.
pub fn run(a: TrainArgs) -> Result<u8> {
    set_threads(a.threads);
    let mut job = Job::check(a)?;
    let train_set = Dataset::open_with(&job.args.data, Split::Train, &job.limits)
        .context("loading the training set")?;
    let test_set = Dataset::open_with(&job.args.data, Split::Test, &job.limits)
        .context("loading the test set")?;
    let trainer = job.trainer(&train_set)?;
    let args = &job.args;
    let cfg = trainer.config().clone();
    let mut out = Out::new();
    match train_with_progress(args, trainer, (&train_set, &test_set), &mut out)? {
        Finished::Stopped {
            iteration,
            checkpoint,
        } => {
            out.finish()?;
            match checkpoint {
                Some(p) => eprintln!(
                    "mnist-mlp: interrupted after iteration {iteration}; checkpoint written to {}\n\
                     mnist-mlp: resume with: {}",
                    p.display(),
                    resume_command(args, &p)
                ),
                None => eprintln!(
                    "mnist-mlp: interrupted after iteration {iteration}; no --checkpoint was \
                     given, nothing saved"
                ),
            }
            Ok(signals::exit_code())
        }
        Finished::Done(outcome) => {
            if let Some(path) = &args.save {
                let facts = [
                    ("iterations", outcome.iterations.to_string()),
                    ("seed", cfg.seed.to_string()),
                    ("batch", cfg.batch.to_string()),
                    ("lr", cfg.learning_rate().to_string()),
                    ("test_accuracy", outcome.test.value().to_string()),
                    ("train_images", train_set.len().to_string()),
                ];
                model_file::save_model(path, &outcome.model, &facts)?;
                log::info!("model saved to {}", path.display());
            }
            out.finish()?;
            Ok(0)
        }
    }
}

/// A `train` command line, checked before any work is done: the configuration, the outputs
/// (writable, clobbering nothing, locked), and the model file the run starts from, read.
struct Job {
    args: TrainArgs,
    cfg: TrainConfig,
    /// The length given on the command line; a resumed run keeps its own otherwise.
    given: Option<Length>,
    start: Start,
    limits: Limits,
    /// The checkpoint's lock, held for the whole run (`FILE.lock` stays; the lock dies with
    /// us).
    _lock: Option<FileLock>,
}

/// What a run starts from.
enum Start {
    Fresh,
    /// `--init`: a model (a checkpoint's optimizer state is not used).
    Init(PathBuf, Mlp),
    /// `--resume`: a checkpoint, read within the limits and checked.
    Resume(PathBuf, model_file::Loaded),
}

impl Job {
    fn check(mut a: TrainArgs) -> Result<Job> {
        // Given, or else the checkpoint's own length when resuming, or the tutorial's.
        let given = match (a.iterations, a.epochs) {
            (_, Some(e)) => Some(Length::Epochs(e)),
            (Some(i), None) => Some(Length::Iterations(i)),
            (None, None) => None,
        };
        let defaults = TrainConfig::default();
        let cfg = TrainConfig {
            arch: a.arch.map_or(defaults.arch, Arch::from),
            hidden: a.hidden.clone().map_or(defaults.hidden, |h| h.0),
            length: given.unwrap_or(defaults.length),
            batch: a.batch.unwrap_or(defaults.batch),
            lr: a.lr,
            seed: a.seed.unwrap_or(defaults.seed),
            log_every: a.log_every,
            shuffle: !a.no_shuffle,
            schedule: a.lr_schedule.into(),
        };
        let limits = a.limits.limits();
        // Files to be written are checked before any work: a run must not train for an hour
        // and then find that its model cannot be saved.
        for path in [&a.save, &a.checkpoint].into_iter().flatten() {
            check_writable(path, true)?;
        }
        if let Some(path) = &a.metrics {
            check_writable(path, false)?;
        }
        check_no_clobber(&a)?;
        // One run per checkpoint: a second run pointed at the same file is refused before it
        // does any work, instead of both overwriting it.
        let mut lock = a.checkpoint.as_deref().map(FileLock::acquire).transpose()?;
        // Model files before data files: each input is checked before the next is opened.
        let start = match (&a.init, &a.resume) {
            (Some(path), _) => {
                let loaded = load_model(path, a.arch, &limits).context("loading --init")?;
                Start::Init(path.clone(), loaded.model)
            }
            (None, Some(path)) => {
                let f = model_file::load_with(path, &checkpoint::EXTRAS, &limits)
                    .context("resuming")?;
                checkpoint::expect(&f, path).context("resuming")?;
                // A resumed run goes on checkpointing to the file it resumed from.
                if a.checkpoint.is_none() {
                    lock = Some(checkpoint_to_resumed(&a, path)?);
                    a.checkpoint = Some(path.clone());
                }
                Start::Resume(path.clone(), f)
            }
            (None, None) => Start::Fresh,
        };
        Ok(Job {
            args: a,
            cfg,
            given,
            start,
            limits,
            _lock: lock,
        })
    }

    /// The trainer the run starts from, on `train_set` (the model read is moved into it).
    fn trainer(&mut self, train_set: &Dataset) -> Result<Trainer> {
        let a = &self.args;
        Ok(match std::mem::replace(&mut self.start, Start::Fresh) {
            Start::Resume(path, f) => {
                Trainer::resume_loaded(f, &path, self.given, a.log_every, train_set)
                    .context("resuming (--iterations or --epochs sets the length to train to)")?
            }
            Start::Init(path, model) => {
                let sizes = model.layout().sizes();
                let file_hidden = &sizes[1..sizes.len() - 1];
                if let Some(h) = a.hidden.as_ref().filter(|h| h.0 != file_hidden) {
                    bail!(
                        "--hidden {} conflicts with {} (hidden {})",
                        join(&h.0),
                        path.display(),
                        join(file_hidden)
                    );
                }
                Trainer::with_model(&self.cfg, train_set, model)?
            }
            Start::Fresh => Trainer::new(&self.cfg, train_set)?,
        })
    }
}

/// Checks that a resumed run can go on checkpointing to the file `path` it resumes from, and
/// locks it.
fn checkpoint_to_resumed(a: &TrainArgs, path: &Path) -> Result<FileLock> {
    if a.save.as_deref().is_some_and(|s| same_file(s, path)) {
        bail!(
            "--save {}: is the checkpoint this run resumes from and goes on checkpointing to; \
             give --save another path, or --checkpoint another file",
            path.display()
        );
    }
    check_writable(path, true)?;
    Ok(FileLock::acquire(path)?)
}

/// Trains `trainer` to the end of its run or to a signal, with the progress bar, the tutorial's
/// lines on `out` and the `--metrics` CSV; on success, prints the test accuracy.
fn train_with_progress(
    a: &TrainArgs,
    trainer: Trainer,
    (train_set, test_set): (&Dataset, &Dataset),
    out: &mut Out,
) -> Result<Finished> {
    let total = trainer.config().iterations(train_set.len());
    let mut metrics = match &a.metrics {
        Some(p) => Some(Metrics::open(p, a.resume.is_some())?),
        None => None,
    };
    note_decompressed(&[train_set, test_set]);
    let bar = progress_bar(trainer.iteration(), total);
    let control = Control {
        checkpoint: a.checkpoint.as_deref(),
        checkpoint_every: a.checkpoint_every,
        stop: Some(signals::install()),
    };
    let mut metrics_error = None;
    let finished = trainer.train_to_end(train_set, test_set, control, |event| match event {
        Event::Iteration(done) => bar.set_position(done as u64),
        Event::Log(p) => {
            bar.suspend(|| out.line(p.line));
            if let Some(m) = metrics.as_mut() {
                if let Err(e) = m.row(p) {
                    metrics_error.get_or_insert(e);
                }
            }
        }
    });
    hide_bar();
    if let Some(e) = metrics_error {
        return Err(e);
    }
    let finished = finished?;
    if let Finished::Done(outcome) = &finished {
        out.line("");
        out.line(outcome.test);
        if let Some(m) = metrics.as_mut() {
            m.test_accuracy(outcome.iterations, outcome.test.value())?;
        }
    }
    Ok(finished)
}

/// A bar with ETA and iterations/s, only when both stdout and stderr are terminals (so logs
/// over SSH, pipes and CI stay clean).
fn progress_bar(done: usize, total: usize) -> ProgressBar {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64).with_position(done as u64);
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} iterations  {rate}  ETA {eta}")
        .map(|s| {
            s.with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} it/s", s.per_sec());
            })
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    show_bar(&bar);
    bar
}

/// The `--metrics` CSV file.
struct Metrics {
    file: File,
    path: std::path::PathBuf,
}

impl Metrics {
    const HEADER: &'static str = "iteration,loss,batch_accuracy,test_accuracy,elapsed_ms,lr";

    fn open(path: &Path, append: bool) -> Result<Self> {
        let existing = append && path.exists();
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(existing)
            .truncate(!existing)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut m = Metrics {
            file,
            path: path.to_path_buf(),
        };
        if !existing {
            m.write(Self::HEADER)?;
        }
        Ok(m)
    }

    fn row(&mut self, p: &Progress) -> Result<()> {
        let ms = p.elapsed.as_secs_f64() * 1e3;
        self.write(&format!(
            "{},{},{},,{ms:.1},{}",
            p.line.iteration, p.line.loss, p.line.accuracy, p.lr
        ))
    }

    fn test_accuracy(&mut self, iterations: usize, acc: f32) -> Result<()> {
        self.write(&format!("{iterations},,,{acc},,"))
    }

    fn write(&mut self, line: &str) -> Result<()> {
        writeln!(self.file, "{line}")
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}
