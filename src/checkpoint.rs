//! Checkpoints, and the one place their format is written down.
//!
//! A checkpoint is a model file (see [`crate::model_file`]) of kind `checkpoint` that also
//! holds what a run needs to continue bit for bit:
//! - the tensors `adam.m` and `adam.v` (Adam's moments, one per parameter) and `data.order`
//!   (the current epoch's order of the training examples, u32);
//! - metadata: `iteration` (iterations done), `adam_t` (Adam's step), `lr`, `lr_schedule`,
//!   `batch`, `seed`, `shuffle`, `length` (`iterations:N` or `epochs:N`, the run's target),
//!   `train_count` (the training set's size), `data_pos` and `data_epoch` (where the batches
//!   stand) and `rng` (the shuffling generator, four 64-bit words in hex).
//!
//! [`save`] writes one from the run's own buffers; [`Restored::read`] parses one back, each
//! value with the parser of its type.

use std::path::Path;

use crate::data::BatcherState;
use crate::error::{Error, Result};
use crate::model::Mlp;
use crate::model_file::{self, Data, Loaded};
use crate::train::{Length, Schedule};

/// Adam's first moments.
pub const ADAM_M: &str = "adam.m";
/// Adam's second moments.
pub const ADAM_V: &str = "adam.v";
/// The batch order of the current epoch.
pub const ORDER: &str = "data.order";
/// The tensors a checkpoint adds to a model file. A loader that also accepts a checkpoint as
/// a model (`eval`, `predict`, `--init`) allows these.
pub const EXTRAS: [&str; 3] = [ADAM_M, ADAM_V, ORDER];

/// The `kind` metadata of a checkpoint.
const KIND: &str = "checkpoint";

/// The settings of the run a checkpoint belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Base learning rate.
    pub lr: f32,
    /// How the rate changes over the run.
    pub schedule: Schedule,
    /// Mini-batch size.
    pub batch: usize,
    /// Seed of the initial weights and the batch order.
    pub seed: u64,
    /// Whether batches are shuffled.
    pub shuffle: bool,
    /// The run's target length; `None` when the file records none.
    pub length: Option<Length>,
}

/// A run as it stands, borrowed from the trainer for [`save`].
pub struct Snapshot<'a> {
    /// The network.
    pub model: &'a Mlp,
    /// The run's settings.
    pub settings: Settings,
    /// Iterations done.
    pub iteration: usize,
    /// Adam's step.
    pub adam_t: u64,
    /// Adam's first moments.
    pub m: &'a [f32],
    /// Adam's second moments.
    pub v: &'a [f32],
    /// Where the batches stand.
    pub data: BatcherState,
}

/// Writes `s` to `path` as a checkpoint, atomically (see [`model_file::save`]).
pub fn save(path: &Path, s: &Snapshot) -> Result<()> {
    let d = &s.data;
    let length = s.settings.length.map(|l| l.to_string());
    let mut facts = vec![
        ("iteration", s.iteration.to_string()),
        ("adam_t", s.adam_t.to_string()),
        ("lr", s.settings.lr.to_string()),
        ("batch", s.settings.batch.to_string()),
        ("seed", s.settings.seed.to_string()),
        ("shuffle", s.settings.shuffle.to_string()),
        ("lr_schedule", s.settings.schedule.to_string()),
        ("train_count", d.order.len().to_string()),
        ("data_pos", d.pos.to_string()),
        ("data_epoch", d.epoch.to_string()),
        ("rng", rng_to_string(&d.rng)),
    ];
    facts.extend(length.map(|l| ("length", l)));
    let extras = [
        (ADAM_M, Data::F32(s.m)),
        (ADAM_V, Data::F32(s.v)),
        (ORDER, Data::U32(&d.order)),
    ];
    model_file::save(path, s.model, KIND, &facts, &extras)
}

/// A checkpoint read back: everything [`Snapshot`] held, owned.
#[derive(Debug)]
pub struct Restored {
    /// The network.
    pub model: Mlp,
    /// The run's settings.
    pub settings: Settings,
    /// Iterations done.
    pub iteration: usize,
    /// Adam's step.
    pub adam_t: u64,
    /// Adam's first moments.
    pub m: Vec<f32>,
    /// Adam's second moments.
    pub v: Vec<f32>,
    /// Where the batches stood; `order` has the training set's size the run was made on.
    pub data: BatcherState,
}

impl Restored {
    /// Parses the checkpoint `f`, read from `path` (which errors name).
    pub fn read(f: Loaded, path: &Path) -> Result<Self> {
        expect(&f, path)?;
        let value = |key: &str| f.meta(path, key);
        let parsed = |key: &str| -> Result<u64> { number(path, key, value(key)?) };
        let settings = Settings {
            lr: value("lr")?
                .parse()
                .map_err(|_| Error::model(path, "metadata 'lr' is not a number"))?,
            schedule: value("lr_schedule")?
                .parse()
                .map_err(|e: String| Error::model(path, e))?,
            batch: parsed("batch")? as usize,
            seed: parsed("seed")?,
            shuffle: value("shuffle")? == "true",
            length: match f.metadata.get("length") {
                Some(l) => Some(l.parse().map_err(|e: String| Error::model(path, e))?),
                None => None,
            },
        };
        let n = f.model.layout().total();
        let count = parsed("train_count")? as usize;
        let data = BatcherState {
            order: f.u32s(path, ORDER, count)?,
            pos: parsed("data_pos")? as usize,
            epoch: parsed("data_epoch")? as usize,
            rng: rng_from_str(value("rng")?)
                .ok_or_else(|| Error::model(path, "metadata 'rng' is not a generator state"))?,
            shuffle: settings.shuffle,
        };
        Ok(Restored {
            m: f.f32s(path, ADAM_M, n)?,
            v: f.f32s(path, ADAM_V, n)?,
            iteration: parsed("iteration")? as usize,
            adam_t: parsed("adam_t")?,
            settings,
            data,
            model: f.model,
        })
    }
}

/// Refuses a file at `path` that is a plain model rather than a checkpoint: it has no
/// optimizer state or batch order to resume from.
pub fn expect(f: &Loaded, path: &Path) -> Result<()> {
    if f.metadata.get("kind").map(String::as_str) != Some(KIND) {
        return Err(Error::model(
            path,
            "is a model, not a checkpoint: use --init to start from its weights",
        ));
    }
    Ok(())
}

fn number(path: &Path, key: &str, v: &str) -> Result<u64> {
    v.parse().map_err(|_| {
        Error::model(
            path,
            format!("metadata '{key}' = '{v}' is not a whole number"),
        )
    })
}

fn rng_to_string(rng: &[u64; 4]) -> String {
    rng.iter()
        .map(|w| format!("{w:016x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn rng_from_str(s: &str) -> Option<[u64; 4]> {
    let words: Vec<u64> = s
        .split(',')
        .map(|w| u64::from_str_radix(w, 16).ok())
        .collect::<Option<_>>()?;
    words.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;
    use crate::rng::Rng;

    #[test]
    fn a_snapshot_reads_back_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck");
        let model = Mlp::new(Arch::Relu, &[6, 5, 3], &mut Rng::new(1)).unwrap();
        let n = model.layout().total();
        let m: Vec<f32> = (0..n).map(|i| i as f32 - 3.5).collect();
        let v: Vec<f32> = (0..n).map(|i| 1.0 / (1 + i) as f32).collect();
        let settings = Settings {
            lr: 3e-4,
            schedule: Schedule::Cosine,
            batch: 7,
            seed: u64::MAX,
            shuffle: false,
            length: Some(Length::Epochs(9)),
        };
        let data = BatcherState {
            order: vec![2, 0, 1],
            pos: 1,
            epoch: 4,
            rng: [1, u64::MAX, 0, 0x0123_4567_89ab_cdef],
            shuffle: false,
        };
        let snap = Snapshot {
            model: &model,
            settings: settings.clone(),
            iteration: 41,
            adam_t: 41,
            m: &m,
            v: &v,
            data: data.clone(),
        };
        save(&path, &snap).unwrap();
        let r = Restored::read(model_file::load(&path, &EXTRAS).unwrap(), &path).unwrap();
        assert_eq!(r.settings, settings);
        assert_eq!((r.iteration, r.adam_t), (41, 41));
        assert_eq!((&r.m, &r.v), (&m, &v));
        assert_eq!(r.data, data);
        assert_eq!(r.model.params(), model.params());

        // A file without a length reads as None (the caller must then be told one).
        let no_length = Snapshot {
            settings: Settings {
                length: None,
                ..settings
            },
            ..snap
        };
        save(&path, &no_length).unwrap();
        let r = Restored::read(model_file::load(&path, &EXTRAS).unwrap(), &path).unwrap();
        assert_eq!(r.settings.length, None);

        // A model is not a checkpoint.
        model_file::save_model(&path, &model, &[]).unwrap();
        let e = Restored::read(model_file::load(&path, &EXTRAS).unwrap(), &path).unwrap_err();
        assert!(
            e.to_string().contains("is a model, not a checkpoint"),
            "{e}"
        );
    }
}
