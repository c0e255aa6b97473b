//! Outputs and inputs: a checkpoint is accepted where a model is; an output that would
//! destroy one of the run's inputs is refused before any work.

use super::*;

/// A checkpoint holds a model: `--init` takes one, as `eval` and `predict` do (its optimizer
/// tensors are not "unexpected").
#[test]
fn a_checkpoint_is_accepted_where_a_model_is() {
    let f = Fixtures::new();
    let (raw, ck) = (s(&f.raw), s(&f.ckpt));
    let out = expect(
        &[
            "train",
            "--data",
            &raw,
            "--iterations",
            "1",
            "--batch",
            "4",
            "--init",
            &ck,
        ],
        0,
        &[],
    );
    assert!(out.contains("Accuracy on test set"), "{out}");
    let out = expect(&["predict", "--model", &ck, &s(&f.digit)], 0, &[]);
    assert!(out.starts_with(&format!("{}\t", s(&f.digit))), "{out}");
}

/// An output that names one of the run's own inputs, or another output, is refused before
/// any work, and every file is left as it was: `--metrics` on a mapped data file would
/// truncate it under the run (killed by SIGBUS), and `--save` would replace it with a model.
/// Writing a model back over its `--init` file (fine-tuning in place) is allowed.
#[test]
fn outputs_that_would_destroy_inputs_are_refused() {
    let f = Fixtures::new();
    let t = f.tmp.path();
    let (raw, gz) = (s(&f.raw), s(&f.data));
    let train = ["train", "--iterations", "1", "--data"];
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    // Spelled another way, through a symlink, or the .gz the run reads: the same file.
    let link = t.join("labels-link");
    symlink(f.raw.join("t10k-labels-idx1-ubyte"), &link).unwrap();
    let before = (snapshot(&f.raw), snapshot(&f.data), snapshot(t));
    let link = s(&link);
    let images = format!("{raw}/../raw/train-images-idx3-ubyte");
    let gz_labels = format!("{gz}/train-labels-idx1-ubyte.gz");
    #[rustfmt::skip]
    let data_rows: [(&str, &str, &str); 4] = [
        (&raw, "--metrics", &images),
        (&raw, "--save", &link),
        (&raw, "--checkpoint", &images),
        (&gz, "--save", &gz_labels),
    ];
    for (data, flag, out) in data_rows {
        let args = [&train[..], &[data, "--batch", "4", flag, out]].concat();
        expect(&args, 1, &[flag, out, "which this run reads"]);
    }

    // (--resume takes its batch from the checkpoint.)
    let (m, ck) = (s(&f.model), s(&f.ckpt));
    let new = s(&t.join("new.safetensors"));
    let new_other_spelling = format!("{}/./new.safetensors", t.display());
    #[rustfmt::skip]
    let rows: [(&[&str], &[&str]); 4] = [
        (&["--batch", "4", "--init", &m, "--metrics", &m], &["--metrics", "is the --init file too"]),
        (&["--resume", &ck, "--metrics", &ck], &["--metrics", "is the --resume file too"]),
        (&["--batch", "4", "--save", &new, "--metrics", &new_other_spelling], &["--metrics", "is the --save file too"]),
        (&["--batch", "4", "--save", &new, "--checkpoint", &new_other_spelling], &["--save", "--checkpoint", "same file"]),
    ];
    for (extra, needles) in rows {
        let args = [&train[..], &[raw.as_str()], extra].concat();
        expect(&args, 1, needles);
    }
    let after = (snapshot(&f.raw), snapshot(&f.data), snapshot(t));
    assert!(before == after, "a refused run changed a file");

    // Fine-tuning in place: read first, then replaced whole.
    let args = [
        &train[..],
        &[raw.as_str(), "--batch", "4", "--init", &m, "--save", &m],
    ]
    .concat();
    expect(&args, 0, &[]);
    assert_ne!(
        fs::read(&f.model).unwrap(),
        before.2.iter().find(|(p, _)| *p == f.model).unwrap().1
    );
}
