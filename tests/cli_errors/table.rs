//! The table: every bad file for every argument that names one, one process per row.

use super::*;

/// Every row of the table.
fn rows(f: &Fixtures) -> Vec<Case> {
    let mut t = Table::default();
    let tp = f.tmp.path();
    let (d, m, digit) = (s(&f.data), s(&f.model), s(&f.digit));

    // --- Models and checkpoints: eval --model, predict --model, train --init, --resume.
    for b in bad_models(f) {
        let p = s(&b.path);
        let train = ["train", "--data", &d, "--iterations", "3", "--batch", "4"];
        let consumers: [(&str, Vec<&str>); 4] = [
            ("eval --model", vec!["eval", "--model", &p, "--data", &d]),
            ("predict --model", vec!["predict", "--model", &p, &digit]),
            ("train --init", [&train[..], &["--init", &p]].concat()),
            ("train --resume", [&train[..5], &["--resume", &p]].concat()),
        ];
        for (consumer, args) in consumers {
            let name = format!("{consumer}: {}", b.what);
            t.row(name, &args, 1, &b.needles, b.how);
        }
    }
    t.row(
        "train --resume: a model, not a checkpoint".into(),
        &["train", "--data", &d, "--resume", &m],
        1,
        &["m.safetensors", "is a model, not a checkpoint", "--init"],
        Plain,
    );

    // --- The data directory: train --data, eval --data, predict --data --index, and the
    // file each reads first (broken in the rows further down).
    let consumers = |dir: &str| -> [(&'static str, Vec<String>, &'static str); 3] {
        let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect();
        #[rustfmt::skip]
        let c = [
            ("train --data", v(&["train", "--data", dir, "--iterations", "1", "--batch", "4"]), "train-images-idx3-ubyte"),
            ("eval --data", v(&["eval", "--model", &m, "--data", dir]), "t10k-images-idx3-ubyte"),
            ("predict --data", v(&["predict", "--model", &m, "--data", dir, "--index", "0"]), "t10k-images-idx3-ubyte"),
        ];
        c
    };
    let unreadable_dir = tp.join("data-000");
    write_dataset(&unreadable_dir, 20);
    fs::set_permissions(&unreadable_dir, fs::Permissions::from_mode(0o000)).unwrap();
    #[rustfmt::skip]
    let dirs = [
        input("missing", tp.join("no-data"), &["no-data/", "missing data file", "fetch-mnist.sh"], Plain),
        input("a file", f.model.clone(), &["m.safetensors", "not a directory"], Plain),
        input("empty", f.file("data-empty", &Bad::Dir), &["data-empty/", "missing data file"], Plain),
        input("a symlink loop", f.file("data-loop", &Bad::SymlinkLoop), &["data-loop", "symbolic links"], Plain),
        input("unreadable (chmod 000)", unreadable_dir, &["data-000", "Permission denied"], Unprivileged),
    ];
    for b in &dirs {
        for (consumer, args, _) in consumers(&s(&b.path)) {
            let name = format!("{consumer}: directory {}", b.what);
            t.row(name, &args, 1, &b.needles, b.how);
        }
    }
    let over: u32 = 10_956_549; // 16 + 784 × this ≈ 8 GiB, as the header says
    #[rustfmt::skip]
    let files = [
        data_file("missing", Bad::Missing, &["missing data file", "also tried"], Plain),
        data_file("a directory", Bad::Dir, &["not a regular file"], Plain),
        data_file("a symlink loop", Bad::SymlinkLoop, &["symbolic links"], Plain),
        data_file("a FIFO", Bad::Fifo, &["not a regular file"], Plain),
        data_file("unreadable (chmod 000)", Bad::Unreadable(idx_images(20, 28, 28, 20 * 784)), &["Permission denied"], Unprivileged),
        data_file("empty", Bad::Bytes(vec![]), &["truncated: 0 bytes"], Plain),
        data_file("a model file", Bad::Copy(f.model.clone()), &["wrong magic number", "a safetensors file"], Plain),
        data_file("a PNG image", Bad::Bytes(png_digit()), &["wrong magic number", "a PNG image"], Plain),
        data_file("gzip data without .gz", Bad::Bytes(gzip(&idx_images(20, 28, 28, 20 * 784))), &["a gzip file", ".gz extension"], Plain),
        data_file("a header claiming 4294967295 images", Bad::Bytes(idx_images(u32::MAX, 28, 28, 784)), &["truncated", "4294967295 images of 28×28"], VmLimit),
        data_file("a sparse 8 GiB file of 10956549 images", Bad::Sparse { head: idx_images(over, 28, 28, 0), len: 16 + u64::from(over) * 784 }, &["holds 10956549 images", "limit of 1000000 images", "--max-images"], VmLimit),
        data_file("a sparse 4 GiB image of 65536×65536", Bad::Sparse { head: idx_images(1, 65536, 65536, 0), len: 16 + (1 << 32) }, &["65536×65536", "limit of 1024 pixels", "--max-image-side"], VmLimit),
    ];
    for (k, b) in files.iter().enumerate() {
        for (j, (consumer, _, stem)) in consumers("").into_iter().enumerate() {
            let dir = s(&f.data_with(&format!("data-{k}-{j}"), stem, &b.bad));
            let args = &consumers(&dir)[j].1;
            let needles = [&[stem][..], &b.needles].concat();
            let name = format!("{consumer}: {stem} {}", b.what);
            t.row(name, args, 1, &needles, b.how);
        }
    }
    // Files only one command needs to show: .gz forms, label files.
    let with = |name: &str, stem: &str, bad: Bad| s(&f.data_with(name, stem, &bad));
    let gz = |name: &str, bad: Bad| {
        let dir = f.data_with(name, "t10k-images-idx3-ubyte", &Bad::Missing);
        make(&dir.join("t10k-images-idx3-ubyte.gz"), &bad);
        s(&dir)
    };
    let labels_4g = Bad::Sparse {
        head: idx_labels(u32::MAX, &[]),
        len: 8 + u64::from(u32::MAX),
    };
    let (images_gz, labels) = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte");
    #[rustfmt::skip]
    let one_off = [
        (gz("gz-empty", Bad::Bytes(vec![])), "t10k-images-idx3-ubyte.gz empty", vec![images_gz, "truncated"], Plain),
        (gz("gz-8g", Bad::Sparse { head: vec![], len: GIB8 }), "t10k-images-idx3-ubyte.gz a sparse 8 GiB file (not gzip)", vec![images_gz, "gzip"], VmLimit),
        (gz("gz-4g", Bad::Bytes(gzip(&idx_images(u32::MAX, 28, 28, 784)))), "t10k-images-idx3-ubyte.gz claiming 4294967295 images", vec![images_gz, "4294967295 images", "gzip file can hold"], VmLimit),
        (with("labels-4g", labels, labels_4g), "t10k-labels-idx1-ubyte a sparse 4 GiB file of 4294967295 labels", vec![labels, "holds 4294967295 labels", "--max-images"], VmLimit),
        (with("labels-model", labels, Bad::Copy(f.model.clone())), "t10k-labels-idx1-ubyte a model file", vec![labels, "wrong magic number", "a safetensors file"], Plain),
    ];
    for (dir, what, needles, how) in one_off {
        let args = ["eval", "--model", &m, "--data", &dir];
        t.row(format!("eval --data: {what}"), &args, 1, &needles, how);
    }

    // --- Images for predict.
    let not_image = "not a PGM (P2/P5) or PNG image";
    #[rustfmt::skip]
    let images = [
        input("missing", tp.join("none.pgm"), &["none.pgm", "no such image file"], Plain),
        input("a directory", f.file("img-dir", &Bad::Dir), &["img-dir", "is a directory"], Plain),
        input("a symlink loop", f.file("img-loop", &Bad::SymlinkLoop), &["img-loop", "symbolic links"], Plain),
        input("a FIFO", f.file("img-fifo", &Bad::Fifo), &["img-fifo", "not a regular file"], Plain),
        input("unreadable (chmod 000)", f.file("img-000", &Bad::Unreadable(pgm())), &["img-000", "Permission denied"], Unprivileged),
        input("empty", f.file("img-empty.png", &Bad::Bytes(vec![])), &["img-empty.png", "empty file"], Plain),
        input("a model file", f.model.clone(), &["m.safetensors", "a safetensors file", not_image], Plain),
        input("an IDX images file", f.raw.join("t10k-images-idx3-ubyte"), &["t10k-images-idx3-ubyte", "an IDX images file", not_image], Plain),
        input("a PGM claiming 100000×100000", f.file("img-huge.pgm", &Bad::Bytes(b"P5\n100000 100000\n255\n".to_vec())), &["img-huge.pgm", "100000×100000, expected 28×28"], VmLimit),
        input("a PNG claiming 100000×100000", f.file("img-huge.png", &Bad::Bytes(png_claiming(100_000, 100_000))), &["img-huge.png", "100000×100000, expected 28×28"], VmLimit),
        input("a sparse 8 GiB file", f.file("img-8g.pgm", &Bad::Sparse { head: pgm(), len: GIB8 }), &["img-8g.pgm", "8589934592 bytes", "too large"], VmLimit),
    ];
    for b in images {
        let args = ["predict", "--model", &m, &s(&b.path)];
        t.row(
            format!("predict IMAGE: {}", b.what),
            &args,
            1,
            &b.needles,
            b.how,
        );
    }
    t.row(
        "predict IMAGE: a good image, then a missing one (nothing on stdout)".into(),
        &["predict", "--model", &m, &digit, &s(&tp.join("none.pgm"))],
        1,
        &["none.pgm", "no such image file"],
        Plain,
    );

    // --- Files train writes: refused before any data is read or any training is done.
    let read_only = f.file("read-only", &Bad::Dir);
    fs::set_permissions(&read_only, fs::Permissions::from_mode(0o555)).unwrap();
    for flag in ["--save", "--checkpoint", "--metrics"] {
        let name = flag.trim_start_matches('-');
        // The CSV log is written in place (a FIFO or a device is fine), so /dev/full is
        // refused when its first line cannot be written, still before training.
        let full = match flag {
            "--metrics" => "No space left on device",
            _ => "not a regular file",
        };
        #[rustfmt::skip]
        let outputs = [
            input("a directory", f.file(&format!("out-{name}"), &Bad::Dir), &["is a directory"], Plain),
            input("in a missing directory", tp.join(format!("no-dir/{name}")), &["no-dir does not exist"], Plain),
            input("through a file", f.model.join(name), &["m.safetensors is not a directory"], Plain),
            input("in a read-only directory", read_only.join(name), &["read-only", "Permission denied"], Unprivileged),
            input("/dev/full", "/dev/full".into(), &["/dev/full", full], Plain),
        ];
        for b in outputs {
            let p = s(&b.path);
            let needles = [&["cannot write"][..], &b.needles].concat();
            let args = [
                "train",
                "--data",
                &d,
                "--iterations",
                "1",
                "--batch",
                "4",
                flag,
                &p,
            ];
            t.row(
                format!("train {flag}: {}", b.what),
                &args,
                1,
                &needles,
                b.how,
            );
        }
    }

    // --- Usage errors: the limit flags' own values.
    for flag in ["--max-images", "--max-image-side", "--max-file-mib"] {
        for (value, problem) in [("0", "at least 1"), ("lots", "positive integer")] {
            let args = ["eval", "--model", &m, "--data", &d, flag, value];
            t.row(
                format!("eval {flag} {value}"),
                &args,
                2,
                &[flag, problem],
                Plain,
            );
        }
    }
    t.cases
}

#[test]
fn every_bad_file_gives_one_line_naming_it_and_nothing_on_stdout() {
    let f = Fixtures::new();
    let cases = rows(&f);
    let nobody = nobody_works(&f);
    let mut failed = Vec::new();
    let mut skipped = 0;
    for case in &cases {
        let as_nobody = case.how == Unprivileged && is_root();
        if as_nobody {
            if let Err(why) = &nobody {
                eprintln!("SKIPPED {}: running as root and {why}", case.name);
                skipped += 1;
                continue;
            }
        }
        if let Err(e) = check(case, as_nobody) {
            failed.push(format!("  {}: {e}", case.name));
        }
    }
    eprintln!(
        "{} rows, {} passed, {} failed, {skipped} skipped",
        cases.len(),
        cases.len() - failed.len() - skipped,
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}
