//! Models that outlive the run: save, eval, predict, init, checkpoint and resume, interrupt,
//! divergence, and writes that fail without losing the previous file.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use mnist_mlp::model_file;

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "mnist-mlp {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "mnist-mlp {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    err
}

fn params(path: &Path) -> Vec<f32> {
    model_file::load(path, &mnist_mlp::checkpoint::EXTRAS)
        .unwrap()
        .model
        .params()
        .to_vec()
}

/// A small real data set (raw files, so they are mapped) and a scratch directory.
fn setup() -> (tempfile::TempDir, tempfile::TempDir) {
    (
        subset(&mnist_10k(), 2000, 500),
        tempfile::tempdir().unwrap(),
    )
}

#[test]
fn saved_model_evaluates_and_predicts_like_the_run_that_made_it() {
    let (data, tmp) = setup();
    let d = data.path().to_str().unwrap();
    let model = tmp.path().join("m.safetensors");
    let m = model.to_str().unwrap();
    let trained = ok(&[
        "train",
        "--data",
        d,
        "--arch",
        "relu",
        "--iterations",
        "40",
        "--batch",
        "64",
        "--save",
        m,
    ]);
    let final_line = trained.lines().last().unwrap();
    let eval = ok(&["eval", "--model", m, "--data", d]);
    assert_eq!(
        eval.lines().next().unwrap(),
        final_line,
        "eval agrees with train"
    );
    assert!(eval.contains("Per-class accuracy:") && eval.contains("Confusion matrix"));
    // The confusion matrix rows sum to the test set size.
    let matrix = eval
        .lines()
        .skip_while(|l| !l.starts_with("Confusion matrix"))
        .skip(2);
    let total: usize = matrix
        .flat_map(|l| {
            l.split(':')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .map(|n| n.parse::<usize>().unwrap())
        })
        .sum();
    assert_eq!(total, 500, "{eval}");
    // The same, as one JSON object.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--model", m, "--data", d, "--json"])).unwrap();
    assert_eq!(
        format!("Accuracy on test set: {}", json["accuracy"]),
        final_line,
        "{json}"
    );
    let cells: Vec<u64> = json["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|n| n.as_u64().unwrap()))
        .collect();
    assert_eq!(cells.len(), 100);
    assert_eq!(cells.iter().sum::<u64>(), 500);
    assert_eq!(json["total"], 500);
    let diagonal: u64 = (0..10).map(|c| cells[c * 11]).sum();
    assert_eq!(json["correct"], diagonal);
    assert_eq!(json["per_class"].as_array().unwrap().len(), 10);

    let loaded = model_file::load(&model, &[]).unwrap();
    assert_eq!(loaded.metadata["arch"], "relu");
    assert_eq!(loaded.metadata["hidden"], "512,256,128");
    assert_eq!(loaded.metadata["iterations"], "40");

    let pred = ok(&["predict", "--model", m, "--data", d, "--index", "0,1,2"]);
    let lines: Vec<&str> = pred.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("test[0]\t"), "{pred}");
    // The fourth column is the true label.
    let ds = mnist_mlp::data::Dataset::open(data.path(), mnist_mlp::data::Split::Test).unwrap();
    for (i, line) in lines.iter().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 4, "{line}");
        assert_eq!(cols[3], ds.labels()[i].to_string(), "{line}");
    }
    let json = ok(&[
        "predict", "--model", m, "--data", d, "--index", "3", "--json",
    ]);
    let label = ds.labels()[3];
    assert!(
        json.starts_with(&format!("{{\"index\":3,\"label\":{label},\"digit\":"))
            && json.contains("\"logits\":["),
        "{json}"
    );
    // --invert is for image files: with --index it is a usage error, not ignored.
    fails(
        &[
            "predict", "--model", m, "--data", d, "--index", "3", "--invert",
        ],
        2,
        &["--invert", "--index"],
    );

    // The same image as a PGM file gives the same answer as by index.
    let img = ds.images().image(0).to_vec();
    let pgm = tmp.path().join("d.pgm");
    let mut bytes = b"P5\n28 28\n255\n".to_vec();
    bytes.extend_from_slice(&img);
    std::fs::write(&pgm, bytes).unwrap();
    let by_file = ok(&["predict", "--model", m, pgm.to_str().unwrap()]);
    assert_eq!(
        by_file.split('\t').nth(1),
        lines[0].split('\t').nth(1),
        "{by_file} vs {}",
        lines[0]
    );
    // Dark on light without --invert: classified as asked, with a warning that says why not.
    let light = tmp.path().join("light.pgm");
    let mut bytes = b"P5\n28 28\n255\n".to_vec();
    bytes.extend(img.iter().map(|p| 255 - p));
    std::fs::write(&light, bytes).unwrap();
    let out = run(&["predict", "--model", m, light.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("pass --invert"), "{}", stderr(&out));
    let out = run(&["predict", "--model", m, "--invert", light.to_str().unwrap()]);
    assert!(!stderr(&out).contains("--invert"), "{}", stderr(&out));
    assert_eq!(stdout(&out).split('\t').nth(1), lines[0].split('\t').nth(1));
    // A tab in a file name is escaped: the line keeps its three columns.
    let tabbed = tmp.path().join("a\tb.pgm");
    std::fs::copy(&pgm, &tabbed).unwrap();
    let out = ok(&["predict", "--model", m, tabbed.to_str().unwrap()]);
    let cols: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(cols.len(), 3, "{out:?}");
    assert!(cols[0].ends_with("a\\tb.pgm"), "{out:?}");
}

#[test]
fn resume_continues_bit_for_bit() {
    let (data, tmp) = setup();
    let d = data.path().to_str().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    // A small network: bit-identity does not depend on the size, and this also runs under QEMU.
    let common = [
        "train",
        "--data",
        d,
        "--batch",
        "64",
        "--log-every",
        "10",
        "--arch",
        "relu",
        "--seed",
        "3",
        "--hidden",
        "64,32",
    ];
    let whole = ok(&[&common[..], &["--iterations", "60", "--save", &p("whole")]].concat());
    let first = ok(&[
        &common[..],
        &[
            "--iterations",
            "30",
            "--checkpoint",
            &p("ckpt"),
            "--checkpoint-every",
            "7",
        ],
    ]
    .concat());
    let resume = [
        "train",
        "--data",
        d,
        "--log-every",
        "10",
        "--iterations",
        "60",
        "--resume",
        &p("ckpt"),
        "--save",
        &p("resumed"),
    ];
    let second = ok(&resume);
    let progress = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("Iteration"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let mut joined = progress(&first);
    joined.extend(progress(&second));
    assert_eq!(joined, progress(&whole));
    assert_eq!(second.lines().last(), whole.lines().last());
    assert_eq!(
        params(Path::new(&p("whole"))),
        params(Path::new(&p("resumed"))),
        "weights differ"
    );
    // A resumed run takes its settings from the checkpoint: conflicting ones are usage errors.
    fails(
        &[&resume[..], &["--arch", "seed"]].concat(),
        2,
        &["--resume", "--arch"],
    );
    // A model is not a checkpoint.
    fails(
        &["train", "--data", d, "--resume", &p("whole")],
        1,
        &["is a model, not a checkpoint", "--init"],
    );
    // Settings in a checkpoint that cannot run are reported against the file. The edit keeps
    // the header's length: "64" becomes "00", a batch of 0.
    let bytes = std::fs::read(p("ckpt")).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let at = text
        .find("\"batch\":\"64\"")
        .expect("batch in the checkpoint's metadata");
    let mut edited = bytes.clone();
    edited[at..at + 12].copy_from_slice(b"\"batch\":\"00\"");
    std::fs::write(p("bad-ckpt"), edited).unwrap();
    let err = fails(
        &["train", "--data", d, "--resume", &p("bad-ckpt")],
        1,
        &[&p("bad-ckpt"), "batch size must be at least 1"],
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn init_fine_tunes_and_refuses_a_conflicting_architecture() {
    let (data, tmp) = setup();
    let d = data.path().to_str().unwrap();
    let m = tmp.path().join("m").to_str().unwrap().to_string();
    ok(&[
        "train",
        "--data",
        d,
        "--arch",
        "relu",
        "--hidden",
        "64,32",
        "--iterations",
        "20",
        "--save",
        &m,
    ]);
    let tuned = ok(&[
        "train",
        "--data",
        d,
        "--init",
        &m,
        "--iterations",
        "5",
        "--log-every",
        "1",
    ]);
    assert_eq!(
        tuned.lines().filter(|l| l.starts_with("Iteration")).count(),
        5
    );
    fails(
        &["train", "--data", d, "--init", &m, "--arch", "seed"],
        1,
        &["--arch seed conflicts with", "a relu network"],
    );
    fails(
        &["train", "--data", d, "--init", &m, "--hidden", "64"],
        1,
        &["--hidden 64 conflicts", "hidden 64,32"],
    );
    ok(&[
        "train",
        "--data",
        d,
        "--init",
        &m,
        "--arch",
        "relu",
        "--hidden",
        "64,32",
        "--iterations",
        "1",
    ]);
}

#[test]
fn bad_model_files_are_named_errors() {
    let (data, tmp) = setup();
    let d = data.path().to_str().unwrap();
    let missing = tmp.path().join("none.safetensors");
    fails(
        &["eval", "--model", missing.to_str().unwrap(), "--data", d],
        1,
        &["none.safetensors", "no such file"],
    );
    let idx = data.path().join("t10k-labels-idx1-ubyte");
    fails(
        &["eval", "--model", idx.to_str().unwrap(), "--data", d],
        1,
        &["t10k-labels-idx1-ubyte", "not a safetensors model file"],
    );
    fails(
        &["eval", "--model", tmp.path().to_str().unwrap(), "--data", d],
        1,
        &["is a directory"],
    );
    let m = tmp.path().join("m");
    ok(&[
        "train",
        "--data",
        d,
        "--iterations",
        "1",
        "--save",
        m.to_str().unwrap(),
    ]);
    // A model given as the data directory.
    fails(
        &[
            "eval",
            "--model",
            m.to_str().unwrap(),
            "--data",
            m.to_str().unwrap(),
        ],
        1,
        &["not a directory"],
    );
    fails(
        &[
            "predict",
            "--model",
            m.to_str().unwrap(),
            "--data",
            d,
            "--index",
            "500",
        ],
        1,
        &["--index 500 is out of range", "500 images"],
    );
    let png = tmp.path().join("x.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\nbroken").unwrap();
    fails(
        &[
            "predict",
            "--model",
            m.to_str().unwrap(),
            png.to_str().unwrap(),
        ],
        1,
        &["x.png", "not a readable PNG"],
    );
    fails(&["predict", "--model", m.to_str().unwrap()], 2, &["IMAGE"]);
}

#[test]
fn divergence_stops_with_a_hint_and_keeps_the_last_checkpoint() {
    let (data, tmp) = setup();
    let d = data.path().to_str().unwrap();
    let ck = tmp.path().join("ck");
    let c = ck.to_str().unwrap();
    ok(&["train", "--data", d, "--iterations", "2", "--checkpoint", c]);
    let before = std::fs::read(&ck).unwrap();
    let err = fails(
        &[
            "train",
            "--data",
            d,
            "--iterations",
            "200",
            "--lr",
            "1e30",
            "--checkpoint",
            c,
            "--checkpoint-every",
            "1000",
        ],
        1,
        &["training diverged at iteration", "lower the learning rate"],
    );
    assert!(!err.contains("Accuracy"), "{err}");
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        before,
        "the last good checkpoint stays"
    );
}

#[test]
fn a_failed_write_leaves_the_previous_model_and_no_temporary() {
    let (data, tmp) = setup();
    let d = data.path().to_str().unwrap();
    // /dev/full as a target: refused without touching the device.
    fails(
        &[
            "train",
            "--data",
            d,
            "--iterations",
            "1",
            "--save",
            "/dev/full",
        ],
        1,
        &["cannot write /dev/full", "not a regular file"],
    );
    assert!(!std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_file());

    // A 1 MiB tmpfs cannot hold a 2.3 MB model: the write fails mid-way.
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("SKIPPED the disk-full half: cannot mount a tmpfs here (needs root)");
        return;
    }
    let target = mnt.join("m.safetensors");
    std::fs::write(&target, b"previous model").unwrap();
    fails(
        &[
            "train",
            "--data",
            d,
            "--iterations",
            "1",
            "--save",
            target.to_str().unwrap(),
        ],
        1,
        &[
            "cannot write",
            "m.safetensors",
            "No space left on device",
            "previous file there is unchanged",
        ],
    );
    let left: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let previous = std::fs::read(&target).unwrap();
    Command::new("umount").arg(&mnt).status().unwrap();
    assert_eq!(previous, b"previous model");
    assert_eq!(left.len(), 1, "a temporary file was left behind: {left:?}");
}

/// Runs `mnist-mlp ARGS` with piped output, waits for three lines of its stdout (training is
/// under way), sends it `signal` and waits for it: the third line and the whole output.
fn interrupted(args: &[&str], signal: libc::c_int) -> (String, std::process::Output) {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..3 {
        line.clear();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    }
    // SAFETY: kill(2) on our own child's pid, which stays valid until we wait for it.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    (line, child.wait_with_output().unwrap())
}

#[test]
fn ctrl_c_checkpoints_and_exits_130() {
    let (data, tmp) = setup();
    let ck = tmp.path().join("ck");
    let (line, out) = interrupted(
        &[
            "train",
            "--data",
            data.path().to_str().unwrap(),
            "--iterations",
            "100000",
            "--log-every",
            "1",
            "--batch",
            "32",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--checkpoint-every",
            "100000",
        ],
        libc::SIGINT,
    );
    assert!(line.starts_with("Iteration"), "{line}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("checkpoint written to") && err.contains("--resume"),
        "{err}"
    );
    let f = model_file::load(&ck, &mnist_mlp::checkpoint::EXTRAS).unwrap();
    assert_eq!(f.metadata["kind"], "checkpoint");
    assert!(f.metadata["iteration"].parse::<usize>().unwrap() >= 3);
}

/// SIGTERM (a service manager stopping the run) checkpoints like Ctrl-C and exits 143,
/// 128 + SIGTERM.
#[test]
fn sigterm_checkpoints_and_exits_143() {
    let (data, tmp) = setup();
    let ck = tmp.path().join("ck");
    let (_, out) = interrupted(
        &[
            "train",
            "--data",
            data.path().to_str().unwrap(),
            "--iterations",
            "100000",
            "--log-every",
            "1",
            "--batch",
            "32",
            "--checkpoint",
            ck.to_str().unwrap(),
        ],
        libc::SIGTERM,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("checkpoint written to"), "{err}");
}

#[test]
fn two_runs_on_one_checkpoint_the_second_refuses() {
    let (data, tmp) = setup();
    let ck = tmp.path().join("ck");
    let mut first = bin()
        .args([
            "train",
            "--data",
            data.path().to_str().unwrap(),
            "--iterations",
            "100000",
        ])
        .args([
            "--checkpoint",
            ck.to_str().unwrap(),
            "--log-every",
            "1",
            "--batch",
            "16",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(first.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("Iteration 0"), "{line}");
    let d = data.path().to_str().unwrap();
    fails(
        &[
            "train",
            "--data",
            d,
            "--iterations",
            "1",
            "--checkpoint",
            ck.to_str().unwrap(),
        ],
        1,
        &["in use by another mnist-mlp process"],
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock dies with its process, even on SIGKILL.
    ok(&[
        "train",
        "--data",
        d,
        "--iterations",
        "1",
        "--checkpoint",
        ck.to_str().unwrap(),
    ]);
}

#[test]
fn metrics_file_records_every_log_step_and_the_test_accuracy() {
    let (data, tmp) = setup();
    let csv = tmp.path().join("m.csv");
    let out = ok(&[
        "train",
        "--data",
        data.path().to_str().unwrap(),
        "--iterations",
        "30",
        "--log-every",
        "10",
        "--metrics",
        csv.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "iteration,loss,batch_accuracy,test_accuracy,elapsed_ms,lr"
    );
    assert_eq!(rows.len(), 1 + 3 + 1, "{text}");
    assert!(
        rows[1].starts_with("0,") && rows[3].starts_with("20,"),
        "{text}"
    );
    let acc = out.lines().last().unwrap().rsplit(' ').next().unwrap();
    assert_eq!(rows[4], format!("30,,,{acc},,"), "{text}");
}

/// Killed at any moment, even mid-save: the checkpoint on disk is always a complete one that
/// loads (the previous or the new), never a torn file; and no run ever sees a half-written one.
#[test]
fn sigkill_at_random_moments_never_leaves_a_broken_checkpoint() {
    let (data, tmp) = setup();
    let ck = tmp.path().join("ck");
    let d = data.path().to_str().unwrap();
    let mut rng = mnist_mlp::rng::Rng::new(99);
    let rounds = if reduced() { 5 } else { 20 };
    // A first complete checkpoint: from then on every kill must leave the previous or a new one.
    ok(&[
        "train",
        "--data",
        d,
        "--iterations",
        "2",
        "--batch",
        "16",
        "--hidden",
        "32",
        "--checkpoint",
        ck.to_str().unwrap(),
    ]);
    let mut seen_iterations = Vec::new();
    for round in 0..rounds {
        let mut child = bin()
            .args([
                "train",
                "--data",
                d,
                "--iterations",
                "100000",
                "--batch",
                "16",
                "--hidden",
                "32",
            ])
            .args([
                "--checkpoint",
                ck.to_str().unwrap(),
                "--checkpoint-every",
                "1",
                "--log-every",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it reach the loop (first line), then kill it after a random delay.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.starts_with("Iteration 0"), "round {round}: {line}");
        std::thread::sleep(std::time::Duration::from_micros(rng.below(30_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let f = model_file::load(&ck, &mnist_mlp::checkpoint::EXTRAS)
            .unwrap_or_else(|e| panic!("round {round}: the checkpoint does not load: {e}"));
        assert_eq!(f.metadata["kind"], "checkpoint");
        seen_iterations.push(f.metadata["iteration"].parse::<usize>().unwrap());
    }
    eprintln!("checkpoint iterations seen after each kill: {seen_iterations:?}");
    // A resumed run carries on from the last complete checkpoint, and (holding the lock, so
    // no live writer exists) removes the temporary files killed writers left behind.
    let c = ck.to_str().unwrap();
    ok(&[
        "train",
        "--data",
        d,
        "--iterations",
        "1",
        "--resume",
        c,
        "--checkpoint",
        c,
    ]);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp-")),
        "temporary files left: {names:?}"
    );
}

/// Identical runs write identical files, byte for byte: a copy-only-what-changed deploy and
/// a checksum both see the same model.
#[test]
fn identical_runs_save_identical_bytes() {
    let (data, tmp) = setup();
    let d = data.path().to_str().unwrap();
    let files: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
        .map(|i| {
            let model = tmp.path().join(format!("m{i}.safetensors"));
            let ck = tmp.path().join(format!("c{i}.ck"));
            ok(&[
                "train",
                "--data",
                d,
                "--iterations",
                "3",
                "--batch",
                "32",
                "--save",
                model.to_str().unwrap(),
                "--checkpoint",
                ck.to_str().unwrap(),
            ]);
            (std::fs::read(&model).unwrap(), std::fs::read(&ck).unwrap())
        })
        .collect();
    for (i, f) in files.iter().enumerate().skip(1) {
        assert!(f.0 == files[0].0, "model {i} differs from model 0");
        assert!(
            f.1 == files[0].1,
            "checkpoint {i} differs from checkpoint 0"
        );
    }
}

/// The resume trap: an interrupted `--iterations N --checkpoint F` run prints a command that,
/// pasted as it is, continues to N (not to the default 1000) and keeps checkpointing to F.
#[test]
fn interrupted_run_resumes_with_the_printed_command_to_its_own_length() {
    let (data, tmp) = setup();
    let ck = tmp.path().join("int.ck");
    let model = tmp.path().join("m.safetensors");
    let total = 5000;
    // A small network, a line per iteration: the child blocks on the full stdout pipe a few
    // hundred iterations in, so the interrupt lands long before the end.
    let total_s = total.to_string();
    let (_, out) = interrupted(
        &[
            "train",
            "--data",
            data.path().to_str().unwrap(),
            "--iterations",
            &total_s,
            "--log-every",
            "1",
            "--batch",
            "16",
            "--hidden",
            "16",
            "--arch",
            "relu",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--checkpoint-every",
            "100000",
            "--save",
            model.to_str().unwrap(),
        ],
        libc::SIGINT,
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{err}");
    let stopped: usize = model_file::load(&ck, &mnist_mlp::checkpoint::EXTRAS)
        .unwrap()
        .metadata["iteration"]
        .parse()
        .unwrap();
    assert!(stopped < total, "stopped at {stopped}");
    assert!(!model.exists(), "no model before the run ends");

    // The printed command, word for word (the paths need no quoting here).
    let hint = err
        .lines()
        .find_map(|l| l.strip_prefix("mnist-mlp: resume with: "))
        .unwrap_or_else(|| panic!("no complete resume command in: {err}"));
    let words: Vec<&str> = hint.split(' ').collect();
    assert_eq!(&words[..2], ["mnist-mlp", "train"], "{hint}");
    let resumed = ok(&words[1..]);
    let last = resumed
        .lines()
        .rfind(|l| l.starts_with("Iteration"))
        .unwrap();
    assert!(
        last.starts_with(&format!("Iteration {} ", total - 1)),
        "the resumed run stops at its own length, {total}: {last}"
    );
    let f = model_file::load(&ck, &mnist_mlp::checkpoint::EXTRAS).unwrap();
    assert_eq!(
        f.metadata["iteration"],
        total.to_string(),
        "checkpointed to the same file"
    );
    assert!(model.exists(), "--save repeated by the command");

    // Resuming a finished run trains nothing and says so as a warning, even under -q.
    let again = run(&[&words[1..], &["-q"]].concat());
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("warn") && stderr(&again).contains("nothing to train"),
        "{}",
        stderr(&again)
    );
    // An explicit length still overrides the checkpoint's.
    let longer = ok(&[&words[1..], &["--iterations", &(total + 3).to_string()]].concat());
    assert!(
        longer.contains(&format!("Iteration {} ", total + 2)),
        "{longer}"
    );
}
