//! The training loop: the tutorial's schedule, its progress lines, and the test accuracy.
//!
//! One iteration is: next mini-batch, forward, softmax cross-entropy, backward, one Adam step.
//! Every `log_every` iterations the same batch is run forward again *after* the update and its
//! loss and accuracy are reported, the order of the tutorial's two `sess.run` calls. After the
//! last iteration the whole test set is classified.
//!
//! What a run should reach (measured, see README): `mnist-mlp train --data
//! ../shared/data/mnist-10k` (seed arch, 1000 iterations) about 0.90 test accuracy, the
//! tutorial's TensorFlow graph 0.907–0.909 on the same data; `--arch relu --epochs 3` at
//! least 0.93.
//!
//! After the first iteration the loop allocates nothing: batches, activations, gradients and
//! moments all live in buffers made by [`Trainer::new`].

use std::time::{Duration, Instant};

use crate::data::{Batcher, Dataset};
use crate::error::{Error, Result};
use crate::model::{mnist_sizes, Arch, Mlp, Workspace, DEFAULT_HIDDEN};
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
    model: Mlp,
    adam: Adam,
    grads: Vec<f32>,
    ws: Workspace,
    batcher: Batcher,
    batch: usize,
    iteration: usize,
}

impl Trainer {
    /// A fresh run of `cfg` on `train`, with every buffer it will need allocated.
    pub fn new(cfg: &TrainConfig, train: &Dataset) -> Result<Self> {
        cfg.validate(train.len())?;
        let mut init_rng = Rng::new(cfg.seed);
        let model = Mlp::new(cfg.arch, &mnist_sizes(&cfg.hidden), &mut init_rng)?;
        train.expect_pixels(model.layout().input())?;
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
            batch: cfg.batch,
            iteration: 0,
        })
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
    /// or an error if it is not finite (the run has diverged).
    pub fn step(&mut self, train: &Dataset) -> Result<f32> {
        let b = self.batch;
        let (x, y) = self.ws.input_mut(b);
        self.batcher.next_batch(train, x, y);
        self.model.forward(&mut self.ws, b);
        let (loss, _) = self.model.loss(&mut self.ws, b);
        if !loss.is_finite() {
            return Err(Error::config(format!(
                "training diverged at iteration {}: the loss is {loss}\n\
                 hint: lower the learning rate (--lr)",
                self.iteration
            )));
        }
        self.model.backward(&mut self.grads, &mut self.ws, b);
        self.adam.step(self.model.params_mut(), &self.grads);
        self.iteration += 1;
        Ok(loss)
    }

    /// Loss and accuracy of the network, as it is now, on the batch of the last [`step`].
    ///
    /// [`step`]: Trainer::step
    pub fn batch_metrics(&mut self) -> (f32, f32) {
        let b = self.batch;
        self.model.forward(&mut self.ws, b);
        let (loss, correct) = self.model.loss(&mut self.ws, b);
        (loss, correct as f32 / b as f32)
    }
}

/// What a finished run produced.
pub struct Outcome {
    /// The trained network.
    pub model: Mlp,
    /// Its accuracy on the test set.
    pub test: TestAccuracy,
    /// Iterations run.
    pub iterations: usize,
    /// Wall time of the iterations (not of the test evaluation).
    pub train_time: Duration,
}

/// Trains as `cfg` says on `train`, calling `on_log` with each progress line, then evaluates on
/// `test`.
pub fn train(
    cfg: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    mut on_log: impl FnMut(&LogLine),
) -> Result<Outcome> {
    let mut trainer = Trainer::new(cfg, train)?;
    test.expect_pixels(trainer.model().layout().input())?;
    let iterations = cfg.iterations(train.len());
    log::info!(
        "training {} network {:?} for {iterations} iterations (batch {}, lr {}, seed {}) on {} images",
        cfg.arch.name(),
        trainer.model().layout().sizes(),
        cfg.batch,
        cfg.learning_rate(),
        cfg.seed,
        train.len()
    );
    let start = Instant::now();
    for i in 0..iterations {
        trainer.step(train)?;
        if i % cfg.log_every == 0 {
            let (loss, accuracy) = trainer.batch_metrics();
            on_log(&LogLine {
                iteration: i,
                loss,
                accuracy,
            });
        }
    }
    let train_time = start.elapsed();
    log::info!(
        "{iterations} iterations in {:.2} s ({:.2} ms/iteration)",
        train_time.as_secs_f64(),
        train_time.as_secs_f64() * 1e3 / iterations as f64
    );
    let correct = trainer.model().evaluate(test)?;
    Ok(Outcome {
        test: TestAccuracy {
            correct,
            total: test.len(),
        },
        model: trainer.model,
        iterations,
        train_time,
    })
}
