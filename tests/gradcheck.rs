//! Finite-difference check of the whole network's gradient, for both architectures: the
//! analytic gradient from `Mlp::backward` against central differences of `Mlp::loss_and_gradient`.

use mnist_mlp::model::{Arch, Mlp, Workspace};
use mnist_mlp::rng::Rng;

fn check(arch: Arch) {
    let sizes = [6, 5, 4, 3];
    let bsz = 4;
    let mut rng = Rng::new(21);
    let mut model = Mlp::new(arch, &sizes, &mut rng).unwrap();
    // Move off the initial point: with ReLU's zero biases, a row whose units are all dead feeds
    // exactly 0 into the next layer, right on the kink where no finite difference is valid.
    model
        .params_mut()
        .iter_mut()
        .for_each(|p| *p += 0.05 * rng.normal() as f32);
    let mut ws = Workspace::new(model.layout(), bsz);
    {
        let (x, y) = ws.input_mut(bsz);
        x.iter_mut().for_each(|v| *v = rng.uniform() as f32);
        y.iter_mut()
            .enumerate()
            .for_each(|(i, l)| *l = (i % 3) as u8);
    }
    let loss_of = |m: &Mlp, ws: &mut Workspace| {
        m.forward(ws, bsz);
        f64::from(m.loss_and_gradient(ws, bsz).0)
    };
    loss_of(&model, &mut ws);
    let mut grads = vec![0.0; model.params().len()];
    model.backward(&mut grads, &mut ws, bsz);

    let h = 1e-3f32;
    let mut worst = 0.0f64;
    for (k, &analytic) in grads.iter().enumerate() {
        let orig = model.params()[k];
        model.params_mut()[k] = orig + h;
        let up = loss_of(&model, &mut ws);
        model.params_mut()[k] = orig - h;
        let down = loss_of(&model, &mut ws);
        model.params_mut()[k] = orig;
        let numeric = (up - down) / (2.0 * f64::from(h));
        let err = (numeric - f64::from(analytic)).abs() / (1e-2 + numeric.abs());
        worst = worst.max(err);
        assert!(
            err < 2e-2,
            "{arch:?} param {k}: numeric {numeric} vs analytic {}",
            grads[k]
        );
    }
    // Every parameter was checked, and the gradient is not trivially zero.
    assert!(
        grads.iter().any(|g| g.abs() > 1e-3),
        "{arch:?}: gradient is all zeros"
    );
    eprintln!(
        "{arch:?}: worst relative error {worst:.2e} over {} parameters",
        grads.len()
    );
}

#[test]
fn seed_network_gradient_matches_finite_differences() {
    check(Arch::Seed);
}

#[test]
fn relu_network_gradient_matches_finite_differences() {
    check(Arch::Relu);
}
