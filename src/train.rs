//! The training loop: the tutorial's schedule, its progress lines, and the test accuracy.
//!
//! One iteration is: next mini-batch, forward, softmax cross-entropy, backward, one Adam step.
//! Every `log_every` iterations the same batch is run forward again *after* the update and its
//! loss and accuracy are reported, the order of the tutorial's two `sess.run` calls. After the
//! last iteration the whole test set is classified.
//!
//! What a run should reach (measured, see README): `mnist-mlp train` on the bundled
//! `data/mnist-10k` (seed arch, 1000 iterations) about 0.90 test accuracy, the
//! tutorial's TensorFlow graph 0.907–0.909 on the same data; `--arch relu --epochs 3` at
//! least 0.93.
//!
//! After the first iteration the loop allocates nothing: batches, activations, gradients and
//! moments all live in buffers made by [`Trainer::new`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint::{self, Restored, Settings, Snapshot};
use crate::data::{Batcher, Dataset, CLASSES};
use crate::error::{Error, Result};
use crate::model::{mnist_sizes, Arch, Mlp, Workspace, DEFAULT_HIDDEN};
use crate::model_file::{self, Loaded};
use crate::optim::Adam;
use crate::report::{LogLine, TestAccuracy};
use crate::rng::Rng;

/// Offset between the seed of the initialisation stream and that of the data-order stream, so
/// the two never share draws (and a different architecture does not change the batch order).
const DATA_STREAM: u64 = 0xD1B5_4A32_D192_ED03;

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// A fixed number of iterations (mini-batches).
    Iterations(usize),
    /// Enough iterations to see the training set this many times (rounded up).
    Epochs(usize),
}

impl fmt::Display for Length {
    /// `iterations:N` or `epochs:N`, as a checkpoint records it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Length::Iterations(n) => write!(f, "iterations:{n}"),
            Length::Epochs(n) => write!(f, "epochs:{n}"),
        }
    }
}

impl FromStr for Length {
    type Err = String;

    /// Reads what [`Length`]'s `Display` writes; the count must be at least 1.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not a run length (iterations:N or epochs:N)");
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n: usize = n.parse().map_err(|_| bad())?;
        match (kind, n) {
            (_, 0) => Err(bad()),
            ("iterations", n) => Ok(Length::Iterations(n)),
            ("epochs", n) => Ok(Length::Epochs(n)),
            _ => Err(bad()),
        }
    }
}

/// How the learning rate changes over a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The same rate throughout (the tutorial).
    Constant,
    /// Cosine annealing from the base rate to zero at the last iteration: large steps while far
    /// from a minimum, small ones to settle into it.
    Cosine,
}

impl fmt::Display for Schedule {
    /// The name used on the command line and in checkpoints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// Reads what [`Schedule`]'s `Display` writes.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(format!(
                "unknown lr_schedule '{other}' (constant or cosine)"
            )),
        }
    }
}

impl Schedule {
    /// Name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
        }
    }

    /// The rate for iteration `i` (0-based) of `total`, from base rate `lr`.
    pub fn rate(self, lr: f32, i: usize, total: usize) -> f32 {
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine => {
                let t = i as f64 / total.max(1) as f64;
                (f64::from(lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}

/// Everything that defines a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Network architecture.
    pub arch: Arch,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Run length.
    pub length: Length,
    /// Mini-batch size.
    pub batch: usize,
    /// Learning rate; `None` takes the architecture's default.
    pub lr: Option<f32>,
    /// Seed of initialisation and batch order.
    pub seed: u64,
    /// Report every this many iterations (from iteration 0).
    pub log_every: usize,
    /// Draw batches in a shuffled order (TensorFlow's default) rather than file order.
    pub shuffle: bool,
    /// Learning-rate schedule over the run.
    pub schedule: Schedule,
}

impl Default for TrainConfig {
    /// The tutorial's run.
    fn default() -> Self {
        TrainConfig {
            arch: Arch::Seed,
            hidden: DEFAULT_HIDDEN.to_vec(),
            length: Length::Iterations(1000),
            batch: 128,
            lr: None,
            seed: 0,
            log_every: 100,
            shuffle: true,
            schedule: Schedule::Constant,
        }
    }
}

impl TrainConfig {
    /// The learning rate in effect.
    pub fn learning_rate(&self) -> f32 {
        self.lr.unwrap_or_else(|| self.arch.default_lr())
    }

    /// Number of iterations for a training set of `n` examples.
    pub fn iterations(&self, n: usize) -> usize {
        match self.length {
            Length::Iterations(i) => i,
            Length::Epochs(e) => (e.saturating_mul(n)).div_ceil(self.batch.max(1)),
        }
    }

    fn validate(&self, n: usize) -> Result<()> {
        if self.iterations(n) == 0 {
            return Err(Error::config(
                "nothing to train: the number of iterations or epochs must be at least 1",
            ));
        }
        if self.log_every == 0 {
            return Err(Error::config("--log-every must be at least 1"));
        }
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::config(format!(
                "learning rate must be a positive number, got {lr}"
            )));
        }
        Ok(())
    }
}

/// The state of a run: model, optimizer, buffers and batch order.
pub struct Trainer {
    cfg: TrainConfig,
    /// Iterations of the whole run, for the learning-rate schedule.
    total: usize,
    model: Mlp,
    adam: Adam,
    grads: Vec<f32>,
    ws: Workspace,
    batcher: Batcher,
    iteration: usize,
}

impl Trainer {
    /// A fresh run of `cfg` on `train`, with every buffer it will need allocated.
    pub fn new(cfg: &TrainConfig, train: &Dataset) -> Result<Self> {
        let model = Mlp::new(cfg.arch, &mnist_sizes(&cfg.hidden), &mut Rng::new(cfg.seed))?;
        Self::with_model(cfg, train, model)
    }

    /// A run of `cfg` that starts from `model`'s weights (fine-tuning); the architecture and
    /// sizes come from the model, `cfg.arch`/`cfg.hidden` are ignored.
    pub fn with_model(cfg: &TrainConfig, train: &Dataset, model: Mlp) -> Result<Self> {
        let mut cfg = cfg.clone();
        cfg.arch = model.arch();
        let sizes = model.layout().sizes();
        cfg.hidden = sizes[1..sizes.len() - 1].to_vec();
        cfg.validate(train.len())?;
        train.expect_pixels(model.layout().input())?;
        if model.layout().classes() != CLASSES {
            return Err(Error::config(format!(
                "the network has {} outputs; MNIST has {CLASSES} classes",
                model.layout().classes()
            )));
        }
        let batcher = Batcher::new(
            train.len(),
            cfg.batch,
            cfg.shuffle,
            Rng::new(cfg.seed.wrapping_add(DATA_STREAM)),
        )?;
        let n = model.layout().total();
        Ok(Trainer {
            adam: Adam::new(n, cfg.learning_rate()),
            grads: vec![0.0; n],
            ws: Workspace::new(model.layout(), cfg.batch),
            model,
            batcher,
            iteration: 0,
            total: cfg.iterations(train.len()),
            cfg,
        })
    }

    /// Continues the run saved in the checkpoint at `path`, on the same training set. The
    /// run's settings come from the checkpoint, its length too unless `length` overrides it.
    pub fn resume(
        path: &Path,
        length: Option<Length>,
        log_every: usize,
        train: &Dataset,
    ) -> Result<Self> {
        let f = model_file::load(path, &checkpoint::EXTRAS)?;
        Self::resume_loaded(f, path, length, log_every, train)
    }

    /// [`Trainer::resume`] from a checkpoint already read from `path` (by a caller that
    /// loaded it within its own limits, or checked it before opening the data).
    pub fn resume_loaded(
        f: Loaded,
        path: &Path,
        length: Option<Length>,
        log_every: usize,
        train: &Dataset,
    ) -> Result<Self> {
        let r = Restored::read(f, path)?;
        if r.data.order.len() != train.len() {
            return Err(Error::model(
                path,
                format!(
                    "was made on a training set of {} images, this one has {}; resume on the \
                     same data",
                    r.data.order.len(),
                    train.len()
                ),
            ));
        }
        let length = length.or(r.settings.length).ok_or_else(|| {
            Error::model(path, "records no run length: give the length to train to")
        })?;
        let cfg = TrainConfig {
            arch: r.model.arch(),
            hidden: Vec::new(), // from the model, in with_model
            length,
            batch: r.settings.batch,
            lr: Some(r.settings.lr),
            seed: r.settings.seed,
            log_every,
            shuffle: r.settings.shuffle,
            schedule: r.settings.schedule,
        };
        // Settings that cannot run (batch 0, a negative rate) come from the file: say which.
        let mut t = Self::with_model(&cfg, train, r.model).map_err(|e| match e {
            Error::Config { problem } => Error::model(path, problem),
            other => other,
        })?;
        t.batcher = Batcher::restore(train.len(), cfg.batch, r.data)
            .map_err(|e| Error::model(path, e.to_string()))?;
        t.adam.m = r.m;
        t.adam.v = r.v;
        t.adam.t = r.adam_t;
        t.iteration = r.iteration;
        Ok(t)
    }

    /// Writes the whole state of the run (weights, Adam moments and step, batch order and
    /// generator, settings and length) to `path`, atomically: [`Trainer::resume`] continues
    /// it bit for bit.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let settings = Settings {
            lr: self.cfg.learning_rate(),
            schedule: self.cfg.schedule,
            batch: self.cfg.batch,
            seed: self.cfg.seed,
            shuffle: self.cfg.shuffle,
            length: Some(self.cfg.length),
        };
        checkpoint::save(
            path,
            &Snapshot {
                model: &self.model,
                settings,
                iteration: self.iteration,
                adam_t: self.adam.t,
                m: &self.adam.m,
                v: &self.adam.v,
                data: self.batcher.state(),
            },
        )
    }

    /// The learning rate the last [`Trainer::step`] used.
    pub fn last_learning_rate(&self) -> f32 {
        self.adam.lr
    }

    /// The learning rate of the current iteration.
    pub fn learning_rate_now(&self) -> f32 {
        self.cfg
            .schedule
            .rate(self.cfg.learning_rate(), self.iteration, self.total)
    }

    /// The settings of this run (after defaults and, when resumed, the checkpoint's).
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The network as trained so far.
    pub fn model(&self) -> &Mlp {
        &self.model
    }

    /// Iterations done.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// One iteration on the next batch of `train`. Returns the batch's loss before the update,
    /// or an error if it is not finite (the run has diverged; the weights are not updated).
    pub fn step(&mut self, train: &Dataset) -> Result<f32> {
        let b = self.cfg.batch;
        let (x, y) = self.ws.input_mut(b);
        self.batcher.next_batch(train, x, y);
        self.model.forward(&mut self.ws, b);
        let (loss, _) = self.model.loss_and_gradient(&mut self.ws, b);
        if !loss.is_finite() {
            return Err(Error::Diverged {
                iteration: self.iteration,
                what: format!("the loss is {loss}"),
            });
        }
        self.model.backward(&mut self.grads, &mut self.ws, b);
        self.adam.lr = self.learning_rate_now();
        self.adam.step(self.model.params_mut(), &self.grads);
        self.iteration += 1;
        Ok(loss)
    }

    /// Loss and accuracy of the network, as it is now, on the batch of the last [`step`].
    ///
    /// [`step`]: Trainer::step
    pub fn batch_metrics(&mut self) -> (f32, f32) {
        let b = self.cfg.batch;
        self.model.forward(&mut self.ws, b);
        let (loss, correct) = self.model.loss_and_gradient(&mut self.ws, b);
        (loss, correct as f32 / b as f32)
    }
}

/// A progress report: the tutorial's line plus what a metrics file records.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The line to print.
    pub line: LogLine,
    /// Wall time since this process started training.
    pub elapsed: Duration,
    /// Learning rate in effect.
    pub lr: f32,
}

/// What [`run`] reports as it goes.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// This many iterations are done (every iteration: drive a progress bar with it).
    Iteration(usize),
    /// A progress line is due.
    Log(&'a Progress),
}

/// How a run is watched over: its checkpoints and an external stop request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Control<'a> {
    /// Write a checkpoint here every `checkpoint_every` iterations, at the end, and on a stop.
    pub checkpoint: Option<&'a Path>,
    /// Iterations between checkpoints (0: only at the end and on a stop).
    pub checkpoint_every: usize,
    /// Set (e.g. by a signal handler) to stop after the current iteration.
    pub stop: Option<&'a AtomicBool>,
}

/// How a run ended.
pub enum Finished {
    /// All iterations done and the test set evaluated.
    Done(Outcome),
    /// Stopped on request after `iteration` iterations; the checkpoint, if any, is written.
    Stopped {
        /// Iterations completed.
        iteration: usize,
        /// Where the state was saved.
        checkpoint: Option<PathBuf>,
    },
}

/// What a finished run produced.
pub struct Outcome {
    /// The trained network.
    pub model: Mlp,
    /// Its accuracy on the test set.
    pub test: TestAccuracy,
    /// Iterations run in total (including those before a resume).
    pub iterations: usize,
    /// Wall time of this process's iterations (not of the test evaluation).
    pub train_time: Duration,
}

impl Trainer {
    /// Trains up to the configured length on `train`, reporting to `observe` (every iteration,
    /// and a progress line every `log_every`), checkpointing and stopping as `control` says,
    /// then evaluates on `test`.
    pub fn train_to_end(
        mut self,
        train: &Dataset,
        test: &Dataset,
        control: Control<'_>,
        mut observe: impl FnMut(Event<'_>),
    ) -> Result<Finished> {
        test.expect_pixels(self.model.layout().input())?;
        let iterations = self.cfg.iterations(train.len());
        let first = self.iteration;
        log::info!(
            "training {} network {:?} for iterations {first}..{iterations} (batch {}, lr {} {}, seed {}) on {} images",
            self.cfg.arch.name(),
            self.model.layout().sizes(),
            self.cfg.batch,
            self.cfg.learning_rate(),
            self.cfg.schedule.name(),
            self.cfg.seed,
            train.len()
        );
        let start = Instant::now();
        for i in first..iterations {
            self.step(train)?;
            if i % self.cfg.log_every == 0 {
                let (loss, accuracy) = self.batch_metrics();
                observe(Event::Log(&Progress {
                    line: LogLine {
                        iteration: i,
                        loss,
                        accuracy,
                    },
                    elapsed: start.elapsed(),
                    lr: self.last_learning_rate(),
                }));
            }
            let done = i + 1;
            observe(Event::Iteration(done));
            if done < iterations {
                if let Some(stopped) = self.checkpoint_or_stop(done, control)? {
                    return Ok(stopped);
                }
            }
        }
        let train_time = start.elapsed();
        self.finish(test, control, first..iterations, train_time)
    }

    /// After iteration `done` (not the last): the periodic checkpoint if it is due, then, if a
    /// stop was asked for, a checkpoint and the stop.
    fn checkpoint_or_stop(&self, done: usize, control: Control<'_>) -> Result<Option<Finished>> {
        if let Some(path) = control.checkpoint {
            if control.checkpoint_every > 0 && done % control.checkpoint_every == 0 {
                self.save_checkpoint(path)?;
                log::debug!(
                    "checkpoint at iteration {done} written to {}",
                    path.display()
                );
            }
        }
        if !control.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Ok(None);
        }
        if let Some(path) = control.checkpoint {
            self.save_checkpoint(path)?;
        }
        Ok(Some(Finished::Stopped {
            iteration: done,
            checkpoint: control.checkpoint.map(Path::to_path_buf),
        }))
    }

    /// The end of a run that trained the iterations `ran` in `train_time`: the last
    /// checkpoint, then the test set.
    fn finish(
        mut self,
        test: &Dataset,
        control: Control<'_>,
        ran: std::ops::Range<usize>,
        train_time: Duration,
    ) -> Result<Finished> {
        if ran.is_empty() {
            log::warn!(
                "the checkpoint is already at iteration {} of {}, the end of its run: nothing \
                 to train",
                ran.start,
                ran.end
            );
        } else {
            log::info!(
                "{} iterations in {:.2} s ({:.2} ms/iteration)",
                ran.len(),
                train_time.as_secs_f64(),
                train_time.as_secs_f64() * 1e3 / ran.len() as f64
            );
        }
        if let Some(path) = control.checkpoint {
            self.save_checkpoint(path)?;
        }
        // In the training buffers: the end of a run allocates nothing that training did not.
        let correct = self.model.evaluate_in(&mut self.ws, test)?;
        Ok(Finished::Done(Outcome {
            test: TestAccuracy {
                correct,
                total: test.len(),
            },
            model: self.model,
            iterations: ran.end,
            train_time,
        }))
    }
}

/// Trains a fresh network as `cfg` says on `train`, calling `on_log` with each progress line,
/// then evaluates on `test`.
pub fn train(
    cfg: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    mut on_log: impl FnMut(&LogLine),
) -> Result<Outcome> {
    let observe = |e: Event<'_>| {
        if let Event::Log(p) = e {
            on_log(&p.line);
        }
    };
    match Trainer::new(cfg, train)?.train_to_end(train, test, Control::default(), observe)? {
        Finished::Done(outcome) => Ok(outcome),
        Finished::Stopped { .. } => unreachable!("no stop flag was given"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_starts_at_the_base_rate_and_ends_near_zero() {
        let s = Schedule::Cosine;
        assert_eq!(s.rate(1e-3, 0, 100), 1e-3);
        assert!((s.rate(1e-3, 50, 100) - 5e-4).abs() < 1e-9);
        assert!(s.rate(1e-3, 99, 100) < 1e-6);
        assert_eq!(Schedule::Constant.rate(1e-3, 99, 100), 1e-3);
    }
}
