//! The network: its architecture, one flat parameter buffer carved by a layout table,
//! initialisation, and the forward and backward passes over a batch.
//!
//! Parameters are `[w1, b1, w2, b2, …]` in one `Vec<f32>`; gradients and Adam's moments are
//! mirrors of it, so zeroing or updating all of them is one loop. `w_l` is `(O, I)` like
//! PyTorch's `nn.Linear.weight`, `b_l` is `(O)`. Activations of a batch live in a
//! [`Workspace`] allocated once for the largest batch and reused by every pass.

use crate::data::{to_unit_f32, Dataset, CLASSES};
use crate::error::{Error, Result};
use crate::layers::{linear_backward, linear_forward};
use crate::loss::{argmax, count_correct, softmax_cross_entropy};
use crate::rng::Rng;

/// Inputs of the network: one 28×28 MNIST image.
pub const INPUT: usize = 28 * 28;
/// The tutorial's hidden layer widths.
pub const DEFAULT_HIDDEN: [usize; 3] = [512, 256, 128];
/// Most parameters a network may have: 64 Mi floats is 256 MiB per buffer and 1 GiB with the
/// gradients and both Adam moments, the most a 2 GB board can spare.
pub const MAX_PARAMS: usize = 1 << 26;
/// Rows per forward pass when evaluating a whole data set: large enough for efficient GEMMs,
/// small enough that the activations stay a few MiB.
pub const EVAL_BATCH: usize = 500;

/// Which network to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// The tutorial's network: linear layers with no activation, truncated-normal(0.1)
    /// weights, biases 0.1.
    Seed,
    /// ReLU after every hidden layer, He-normal weights, zero biases.
    Relu,
}

impl Arch {
    /// The name used on the command line and in model files.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Seed => "seed",
            Arch::Relu => "relu",
        }
    }

    /// The learning rate this architecture trains well with (the tutorial's 1e-4 for `seed`,
    /// Adam's usual 1e-3 for `relu`).
    pub fn default_lr(self) -> f32 {
        match self {
            Arch::Seed => 1e-4,
            Arch::Relu => 1e-3,
        }
    }
}

/// Where each layer's weight and bias sit in a flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    sizes: Vec<usize>,
    offsets: Vec<usize>,
    total: usize,
}

impl Layout {
    /// The layout of a network with the given layer widths, input first, classes last.
    pub fn new(sizes: &[usize]) -> Result<Self> {
        if sizes.len() < 2 {
            return Err(Error::config(
                "a network needs at least an input and an output size",
            ));
        }
        if let Some(&bad) = sizes.iter().find(|&&s| s == 0) {
            return Err(Error::config(format!(
                "layer sizes must be at least 1, got {bad} in {sizes:?}"
            )));
        }
        let mut offsets = Vec::with_capacity(sizes.len() - 1);
        let mut total = 0usize;
        for pair in sizes.windows(2) {
            offsets.push(total);
            total = pair[1]
                .checked_mul(pair[0] + 1)
                .and_then(|n| n.checked_add(total))
                .filter(|&t| t <= MAX_PARAMS)
                .ok_or_else(|| {
                    Error::config(format!(
                        "layer sizes {sizes:?} give more than {MAX_PARAMS} parameters"
                    ))
                })?;
        }
        Ok(Layout {
            sizes: sizes.to_vec(),
            offsets,
            total,
        })
    }

    /// Widths of all layers, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of linear layers.
    pub fn layers(&self) -> usize {
        self.offsets.len()
    }

    /// `(I, O)` of layer `l`.
    pub fn dims(&self, l: usize) -> (usize, usize) {
        (self.sizes[l], self.sizes[l + 1])
    }

    /// Total number of parameters.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Network input width.
    pub fn input(&self) -> usize {
        self.sizes[0]
    }

    /// Network output width.
    pub fn classes(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// `(w_l (O, I), b_l (O))` inside `buf`.
    pub fn split<'a>(&self, buf: &'a [f32], l: usize) -> (&'a [f32], &'a [f32]) {
        let (i, o) = self.dims(l);
        let start = self.offsets[l];
        buf[start..start + o * (i + 1)].split_at(o * i)
    }

    /// Mutable `(w_l (O, I), b_l (O))` inside `buf`.
    pub fn split_mut<'a>(&self, buf: &'a mut [f32], l: usize) -> (&'a mut [f32], &'a mut [f32]) {
        let (i, o) = self.dims(l);
        let start = self.offsets[l];
        buf[start..start + o * (i + 1)].split_at_mut(o * i)
    }
}

/// A multilayer perceptron: architecture, layout and parameters.
#[derive(Clone, Debug)]
pub struct Mlp {
    arch: Arch,
    layout: Layout,
    params: Vec<f32>,
}

impl Mlp {
    /// A freshly initialised network of `sizes` (input first, classes last).
    pub fn new(arch: Arch, sizes: &[usize], rng: &mut Rng) -> Result<Self> {
        let layout = Layout::new(sizes)?;
        let mut params = vec![0.0; layout.total()];
        for l in 0..layout.layers() {
            let (fan_in, _) = layout.dims(l);
            let (w, b) = layout.split_mut(&mut params, l);
            match arch {
                Arch::Seed => {
                    w.iter_mut()
                        .for_each(|v| *v = rng.truncated_normal(0.1) as f32);
                    b.fill(0.1);
                }
                Arch::Relu => {
                    let std = (2.0 / fan_in as f64).sqrt();
                    w.iter_mut().for_each(|v| *v = (rng.normal() * std) as f32);
                    b.fill(0.0);
                }
            }
        }
        Ok(Mlp {
            arch,
            layout,
            params,
        })
    }

    /// A network with the given parameters (e.g. loaded from a file).
    pub fn from_params(arch: Arch, layout: Layout, params: Vec<f32>) -> Result<Self> {
        if params.len() != layout.total() {
            return Err(Error::config(format!(
                "{} parameters given for a network of {}",
                params.len(),
                layout.total()
            )));
        }
        Ok(Mlp {
            arch,
            layout,
            params,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The parameter layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// All parameters, `[w1, b1, w2, b2, …]`.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// All parameters, mutable (for the optimizer).
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Forward pass of the first `bsz` rows of `ws`'s input; the logits end up in
    /// [`Workspace::logits`].
    pub fn forward(&self, ws: &mut Workspace, bsz: usize) {
        assert!(
            bsz <= ws.capacity,
            "batch {bsz} exceeds workspace capacity {}",
            ws.capacity
        );
        let last = self.layout.layers() - 1;
        for l in 0..=last {
            let (i, o) = self.layout.dims(l);
            let (w, b) = self.layout.split(&self.params, l);
            let (lower, upper) = ws.acts.split_at_mut(l + 1);
            let x = &lower[l][..bsz * i]; // (B, I)
            let y = &mut upper[0][..bsz * o]; // (B, O)
            let relu = self.arch == Arch::Relu && l < last;
            linear_forward(y, x, w, b, (bsz, i, o), relu);
        }
    }

    /// Softmax cross-entropy of the logits of the last [`Mlp::forward`] against the labels in
    /// `ws`; leaves `∂L/∂logits` in the workspace for [`Mlp::backward`]. Returns the mean loss
    /// and the number of correct rows.
    pub fn loss(&self, ws: &mut Workspace, bsz: usize) -> (f32, usize) {
        let c = self.layout.classes();
        let last = self.layout.layers() - 1;
        let logits = &ws.acts[last + 1][..bsz * c];
        softmax_cross_entropy(
            &mut ws.deltas[last][..bsz * c],
            logits,
            &ws.labels[..bsz],
            c,
        )
    }

    /// Backward pass after [`Mlp::loss`]: writes every parameter's gradient into `grads`
    /// (same layout as the parameters). The first layer's input gradient is not computed.
    pub fn backward(&self, grads: &mut [f32], ws: &mut Workspace, bsz: usize) {
        assert_eq!(grads.len(), self.params.len());
        for l in (0..self.layout.layers()).rev() {
            let (i, o) = self.layout.dims(l);
            let (w, _) = self.layout.split(&self.params, l);
            let (dw, db) = self.layout.split_mut(grads, l);
            let (lower, upper) = ws.deltas.split_at_mut(l);
            let dy = &upper[0][..bsz * o]; // (B, O): ∂L/∂(output of layer l)
            let x = &ws.acts[l][..bsz * i]; // (B, I)
            match lower.last_mut() {
                Some(dx) => {
                    // (B, I): ∂L/∂(output of layer l − 1). In the ReLU network, this
                    // layer's input is the ReLU's output, and dx passes back through it.
                    let dx = &mut dx[..bsz * i];
                    let relu = self.arch == Arch::Relu;
                    linear_backward(Some(dx), dw, db, dy, x, w, (bsz, i, o), relu);
                }
                None => linear_backward(None, dw, db, dy, x, w, (bsz, i, o), false),
            }
        }
    }

    /// Number of examples of `ds` the network classifies correctly.
    pub fn evaluate(&self, ds: &Dataset) -> Result<usize> {
        self.evaluate_in(
            &mut Workspace::new(&self.layout, EVAL_BATCH.min(ds.len())),
            ds,
        )
    }

    /// [`Mlp::evaluate`] in `ws` (made for this network), as many rows at a time as it holds:
    /// a trainer evaluates in its own buffers and allocates nothing. The count is the same
    /// whatever the rows per pass, since each row's logits are computed alike.
    pub fn evaluate_in(&self, ws: &mut Workspace, ds: &Dataset) -> Result<usize> {
        let mut correct = 0;
        self.each_batch(ws, ds, |logits, labels, c| {
            correct += count_correct(logits, labels, c)
        })?;
        Ok(correct)
    }

    /// The class the network picks for every example of `ds`, in order.
    pub fn classify(&self, ds: &Dataset) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ds.len());
        let mut ws = Workspace::new(&self.layout, EVAL_BATCH.min(ds.len()));
        self.each_batch(&mut ws, ds, |logits, _, c| {
            out.extend(logits.chunks_exact(c).map(|row| argmax(row) as u8))
        })?;
        Ok(out)
    }

    /// Runs `ds` through the network as many rows at a time as `ws` holds, handing each
    /// batch's logits (B, C) and labels (B) to `f`.
    fn each_batch(
        &self,
        ws: &mut Workspace,
        ds: &Dataset,
        mut f: impl FnMut(&[f32], &[u8], usize),
    ) -> Result<()> {
        ds.expect_pixels(self.layout.input())?;
        let rows = ws.capacity;
        let mut start = 0;
        while start < ds.len() {
            let bsz = rows.min(ds.len() - start);
            let (x, y) = ws.input_mut(bsz);
            ds.gather_range(start, x, y);
            self.forward(ws, bsz);
            f(ws.logits(bsz), &ws.labels[..bsz], self.layout.classes());
            start += bsz;
        }
        Ok(())
    }

    /// Logits (C) of one image given as `pixels` (I) bytes, scaled like the training data.
    pub fn logits_of(&self, pixels: &[u8]) -> Vec<f32> {
        let mut ws = Workspace::new(&self.layout, 1);
        let (x, _) = ws.input_mut(1);
        to_unit_f32(x, pixels);
        self.forward(&mut ws, 1);
        ws.logits(1).to_vec()
    }
}

/// Activations and their gradients for batches of up to `capacity` rows.
pub struct Workspace {
    capacity: usize,
    /// `acts[0]` is the input (B, sizes[0]); `acts[l + 1]` the output of layer `l`.
    acts: Vec<Vec<f32>>,
    /// `deltas[l]` is `∂L/∂acts[l + 1]` (B, sizes[l + 1]).
    deltas: Vec<Vec<f32>>,
    /// Class of each input row (B).
    labels: Vec<u8>,
}

impl Workspace {
    /// Buffers for batches of up to `capacity` rows of a network with `layout`.
    pub fn new(layout: &Layout, capacity: usize) -> Self {
        let acts = layout
            .sizes()
            .iter()
            .map(|&s| vec![0.0; capacity * s])
            .collect();
        let deltas = layout.sizes()[1..]
            .iter()
            .map(|&s| vec![0.0; capacity * s])
            .collect();
        Workspace {
            capacity,
            acts,
            deltas,
            labels: vec![0; capacity],
        }
    }

    /// The input rows and labels of a batch of `bsz`, to be filled by the caller.
    pub fn input_mut(&mut self, bsz: usize) -> (&mut [f32], &mut [u8]) {
        let p = self.acts[0].len() / self.capacity;
        (&mut self.acts[0][..bsz * p], &mut self.labels[..bsz])
    }

    /// The logits of the last forward pass (B, classes).
    pub fn logits(&self, bsz: usize) -> &[f32] {
        let last = &self.acts[self.acts.len() - 1];
        &last[..bsz * (last.len() / self.capacity)]
    }
}

/// The network sizes for `hidden` widths on MNIST: `[INPUT, hidden…, CLASSES]`.
pub fn mnist_sizes(hidden: &[usize]) -> Vec<usize> {
    let mut sizes = Vec::with_capacity(hidden.len() + 2);
    sizes.push(INPUT);
    sizes.extend_from_slice(hidden);
    sizes.push(CLASSES);
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_carves_the_buffer_in_pytorch_order() {
        let l = Layout::new(&[3, 2, 4]).unwrap();
        assert_eq!(l.total(), 2 * 3 + 2 + 4 * 2 + 4);
        let buf: Vec<f32> = (0..l.total()).map(|v| v as f32).collect();
        let (w1, b1) = l.split(&buf, 0);
        let (w2, b2) = l.split(&buf, 1);
        assert_eq!((w1.len(), b1.len(), w2.len(), b2.len()), (6, 2, 8, 4));
        assert_eq!((b1[0], w2[0], b2[3]), (6.0, 8.0, 19.0));
    }

    #[test]
    fn tutorial_network_has_the_expected_parameter_count() {
        let l = Layout::new(&mnist_sizes(&DEFAULT_HIDDEN)).unwrap();
        assert_eq!(
            l.total(),
            784 * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
        );
    }

    #[test]
    fn bad_layouts_are_errors_not_allocations() {
        assert!(Layout::new(&[784]).is_err());
        assert!(Layout::new(&[784, 0, 10])
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        let e = Layout::new(&[784, usize::MAX / 2, 10])
            .unwrap_err()
            .to_string();
        assert!(e.contains("parameters"), "{e}");
    }

    #[test]
    fn seed_init_is_truncated_normal_with_biases_one_tenth() {
        let m = Mlp::new(Arch::Seed, &[50, 40, 10], &mut Rng::new(1)).unwrap();
        let (w, b) = m.layout().split(m.params(), 0);
        assert!(w.iter().all(|v| v.abs() <= 0.2) && b.iter().all(|&v| v == 0.1));
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!((var / 0.01 - 0.774).abs() < 0.1, "{var}");
        let r = Mlp::new(Arch::Relu, &[50, 40, 10], &mut Rng::new(1)).unwrap();
        let (w, b) = r.layout().split(r.params(), 0);
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!(
            (var * 50.0 / 2.0 - 1.0).abs() < 0.15,
            "He variance 2/fan_in, got {var}"
        );
        assert!(b.iter().all(|&v| v == 0.0));
    }
}
