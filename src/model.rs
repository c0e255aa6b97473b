//! The network: its architecture, one flat parameter buffer carved by a layout table,
//! initialisation, and the forward and backward passes over a batch.
//!
//! Parameters are `[w1, b1, w2, b2, …]` in one `Vec<f32>`; gradients and Adam's moments are
//! mirrors of it, so zeroing or updating all of them is one loop. `w_l` is `(O, I)` like
//! PyTorch's `nn.Linear.weight`, `b_l` is `(O)`. Activations of a batch live in a
//! [`Workspace`] allocated once for the largest batch and reused by every pass.

use crate::data::{to_unit_f32, Dataset, CLASSES};
use crate::error::{Error, Result};
use crate::layers::{linear_backward, linear_forward, InputGrad};
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

impl std::str::FromStr for Arch {
    type Err = String;

    /// `seed` or `relu`, as [`Arch::name`] writes them; the error says what was found.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "seed" => Ok(Arch::Seed),
            "relu" => Ok(Arch::Relu),
            other => Err(format!("unknown arch '{other}' (expected seed or relu)")),
        }
    }
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
    pub fn loss_and_gradient(&self, ws: &mut Workspace, bsz: usize) -> (f32, usize) {
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

    /// Backward pass after [`Mlp::loss_and_gradient`]: writes every parameter's gradient into `grads`
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
                                            // (B, I): ∂L/∂(output of layer l − 1). In the ReLU network, this layer's input is
                                            // the ReLU's output, and dx passes back through it.
            let dx = match lower.last_mut() {
                Some(dx) if self.arch == Arch::Relu => InputGrad::ThroughRelu(&mut dx[..bsz * i]),
                Some(dx) => InputGrad::Plain(&mut dx[..bsz * i]),
                None => InputGrad::Skip,
            };
            linear_backward(dx, dw, db, dy, x, w, (bsz, i, o));
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
    use crate::idx::{Images, Labels};
    use std::path::Path;

    /// Pixels of the tiny images the evaluation tests use: 2×3.
    const PIXELS: usize = 6;
    /// Classes of the tiny test network (labels stay below the data set's 10).
    const TINY_CLASSES: usize = 4;

    /// A data set of 2×3 images held in memory, as the IDX files would hold it.
    fn dataset(images: &[Vec<u8>], labels: &[u8]) -> Dataset {
        let n = images.len() as u32;
        let mut img = vec![0, 0, 8, 3];
        for d in [n, 2, 3] {
            img.extend_from_slice(&d.to_be_bytes());
        }
        img.extend(images.iter().flatten());
        let mut lbl = vec![0, 0, 8, 1];
        lbl.extend_from_slice(&n.to_be_bytes());
        lbl.extend_from_slice(labels);
        let name = Path::new("(test)");
        Dataset::new(
            Images::from_vec(name, img).unwrap(),
            Labels::from_vec(name, lbl).unwrap(),
        )
        .unwrap()
    }

    fn random_images(n: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| (0..PIXELS).map(|_| rng.below(256) as u8).collect())
            .collect()
    }

    /// A network of three layers, its initial parameters moved off the initial point so that
    /// the biases are not all equal and logits and hidden units take both signs.
    fn tiny_net(arch: Arch, seed: u64) -> Mlp {
        let mut rng = Rng::new(seed);
        let mut m = Mlp::new(arch, &[PIXELS, 8, 5, TINY_CLASSES], &mut rng).unwrap();
        m.params_mut()
            .iter_mut()
            .for_each(|p| *p += 0.5 * rng.normal() as f32);
        m
    }

    /// The forward pass as the equations read, in f64: `x ← relu?(W x + b)` layer by layer.
    fn naive_logits(m: &Mlp, pixels: &[u8]) -> Vec<f64> {
        let l = m.layout();
        let mut x: Vec<f64> = pixels.iter().map(|&p| f64::from(p) / 255.0).collect();
        for layer in 0..l.layers() {
            let (i, o) = l.dims(layer);
            let (w, b) = l.split(m.params(), layer);
            let hidden = layer + 1 < l.layers();
            x = (0..o)
                .map(|r| {
                    let wx: f64 = w[r * i..(r + 1) * i]
                        .iter()
                        .zip(&x)
                        .map(|(&w, &x)| f64::from(w) * x)
                        .sum();
                    let z = wx + f64::from(b[r]);
                    if m.arch() == Arch::Relu && hidden {
                        z.max(0.0)
                    } else {
                        z
                    }
                })
                .collect();
        }
        x
    }

    #[test]
    fn each_arch_has_its_name_and_learning_rate() {
        assert_eq!((Arch::Seed.name(), Arch::Relu.name()), ("seed", "relu"));
        assert_eq!(Arch::Seed.default_lr(), 1e-4, "the tutorial's rate");
        assert_eq!(Arch::Relu.default_lr(), 1e-3, "Adam's usual rate");
    }

    /// `logits_of` (one image through a workspace of one row) against the forward pass
    /// computed by hand, for both architectures: the ReLU sits after the hidden layers only.
    #[test]
    fn logits_of_one_image_match_a_naive_forward_pass() {
        let mut rng = Rng::new(4);
        for arch in [Arch::Seed, Arch::Relu] {
            let m = tiny_net(arch, 3);
            let mut signs = (false, false);
            for img in random_images(20, &mut rng) {
                let got = m.logits_of(&img);
                let want = naive_logits(&m, &img);
                assert_eq!(got.len(), TINY_CLASSES, "{arch:?}: one logit per class");
                for (c, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(g) - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{arch:?} {img:?} class {c}: {g} vs naive {w}"
                    );
                    signs = (signs.0 || w < 0.0, signs.1 || w > 0.0);
                }
            }
            // A ReLU wrongly applied to the logits would show on a negative one.
            assert_eq!(signs, (true, true), "{arch:?}: logits of both signs");
        }
    }

    /// `classify`, `evaluate` and `evaluate_in` see every row once, the last pass holding
    /// fewer rows than the workspace, and agree with `logits_of` row by row.
    #[test]
    fn classify_and_evaluate_see_every_row_including_a_last_partial_batch() {
        let m = tiny_net(Arch::Relu, 8);
        let mut rng = Rng::new(6);
        // One pass of EVAL_BATCH rows, then a partial one of 3.
        let n = EVAL_BATCH + 3;
        let images = random_images(n, &mut rng);
        let classes: Vec<u8> = images
            .iter()
            .map(|img| argmax(&m.logits_of(img)) as u8)
            .collect();
        let picked = (0..TINY_CLASSES as u8).filter(|c| classes.contains(c));
        assert!(
            picked.count() >= 3,
            "the test network picks too few classes"
        );
        // Right for two rows in three, wrong for the others: neither 0, 1 nor all.
        let labels: Vec<u8> = classes
            .iter()
            .enumerate()
            .map(|(i, &c)| if i % 3 == 0 { (c + 1) % 4 } else { c })
            .collect();
        let right = n - n.div_ceil(3);
        let ds = dataset(&images, &labels);
        assert_eq!(m.classify(&ds).unwrap(), classes);
        assert_eq!(m.evaluate(&ds).unwrap(), right);
        for rows in [1, 7, EVAL_BATCH, n] {
            let mut ws = Workspace::new(m.layout(), rows);
            assert_eq!(
                m.evaluate_in(&mut ws, &ds).unwrap(),
                right,
                "{rows} rows per pass"
            );
        }
        // A set smaller than EVAL_BATCH is one pass of its own size.
        let small = dataset(&images[..10], &labels[..10]);
        assert_eq!(m.classify(&small).unwrap(), classes[..10]);
        assert_eq!(m.evaluate(&small).unwrap(), 10 - 4);
    }

    /// Images of another size are refused before any pass.
    #[test]
    fn evaluation_refuses_images_of_another_size() {
        let m = Mlp::new(Arch::Relu, &[PIXELS + 1, 3, 2], &mut Rng::new(1)).unwrap();
        let ds = dataset(&random_images(3, &mut Rng::new(2)), &[0, 1, 0]);
        let e = m.evaluate(&ds).unwrap_err().to_string();
        assert!(e.contains("network takes 7 inputs"), "{e}");
        assert!(m.classify(&ds).is_err());
    }

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
