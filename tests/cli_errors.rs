//! The command-line error table: every subcommand that takes files, given each kind of bad
//! file (missing, unreadable, the wrong kind, empty, gigantic), must exit 1 (2 for usage
//! errors) with exactly one line on stderr naming the file and the problem, and print nothing
//! on stdout (no accuracy line, no prediction, no "saved").
//!
//! One table, one process per row; every failing row is printed before the test fails. The
//! fixtures are tiny (20 images, an 8-unit hidden layer) so the table runs in seconds, and
//! under `qemu-aarch64` in well under a minute. Gigantic files are sparse (`set_len`): they
//! cost no disk. Rows marked `VmLimit` run under a 1 GiB address-space limit, so a claim
//! believed rather than checked would fail the row instead of exhausting the machine.
//!
//! "Unreadable" rows (`chmod 000`) cannot work as root, who reads everything: as root they
//! run the binary as `nobody` (uid 65534); where that is impossible they are skipped with a
//! printed reason. Rows with a symlink loop or a path through a regular file make `open` fail
//! with an OS error for every user, so the unreadable path is exercised even then.
//!
//! Existing tests cover neighbouring ground: `tests/idx_errors.rs` the data-file parser's
//! messages one by one, `tests/models.rs` model round trips and failed writes, `tests/cli.rs`
//! usage errors of option values. This table is about the kinds of file each argument can be
//! given, and about the one-line, nothing-on-stdout contract.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How a row runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// As the current user.
    Plain,
    /// As `nobody` when we are root (rows that rely on file permissions).
    Unprivileged,
    /// Under a 1 GiB address-space limit (rows whose files claim gigabytes).
    VmLimit,
}
use How::{Plain, Unprivileged, VmLimit};

/// A row of the table.
struct Case {
    name: String,
    args: Vec<OsString>,
    /// Expected exit code: 1 for runtime errors, 2 for usage errors.
    code: i32,
    /// Substrings the error line must contain (the file's name and the problem).
    needles: Vec<String>,
    how: How,
}

/// The rows, built one call at a time.
#[derive(Default)]
struct Table {
    cases: Vec<Case>,
}

impl Table {
    fn row<A: AsRef<OsStr>>(
        &mut self,
        name: String,
        args: &[A],
        code: i32,
        needles: &[&str],
        how: How,
    ) {
        self.cases.push(Case {
            name,
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            code,
            needles: needles.iter().map(|s| s.to_string()).collect(),
            how,
        });
    }
}

/// A bad input for an argument that names a file or directory: what it is, its path, and
/// what the error line must say besides.
struct Input {
    what: &'static str,
    path: PathBuf,
    needles: Vec<&'static str>,
    how: How,
}

fn input(what: &'static str, path: PathBuf, needles: &[&'static str], how: How) -> Input {
    Input {
        what,
        path,
        needles: needles.to_vec(),
        how,
    }
}

/// Uid and gid of `nobody`, used for the unreadable rows when the test runs as root.
const NOBODY: u32 = 65534;
/// A row that takes longer than this is hung (e.g. blocked opening a FIFO) and fails.
const ROW_TIMEOUT: Duration = Duration::from_secs(60);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The command for a row: the binary (through the test runner if any), default log level.
fn command(case: &Case, as_nobody: bool) -> std::process::Command {
    let mut cmd = if case.how == VmLimit {
        let exe = env!("CARGO_BIN_EXE_mnist-mlp");
        let runner = std::env::var("MNIST_MLP_TEST_RUNNER").unwrap_or_default();
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg(format!("ulimit -v 1048576 && exec {runner} \"$@\""))
            .arg("sh")
            .arg(exe);
        c
    } else {
        bin()
    };
    cmd.args(&case.args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if as_nobody {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

/// Waits for `child` at most [`ROW_TIMEOUT`]; kills it if it hangs.
fn wait(mut child: Child) -> Result<Output, String> {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > ROW_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hung: killed after {} s", ROW_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    })
}

/// Checks one row; `Err` describes everything wrong with it.
fn check(case: &Case, as_nobody: bool) -> Result<(), String> {
    let child = command(case, as_nobody)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let out = wait(child)?;
    let (so, se) = (stdout(&out), stderr(&out));
    let mut wrong = Vec::new();
    if out.status.code() != Some(case.code) {
        wrong.push(format!(
            "exit status {:?}, expected {}",
            out.status.code(),
            case.code
        ));
    }
    if se.contains("panicked") {
        wrong.push("panicked".into());
    }
    // Usage errors are clap's: the `error:` line, then a usage reminder. Runtime errors are
    // exactly one line.
    let lines: Vec<&str> = se.lines().collect();
    let first = lines.first().copied().unwrap_or("");
    if case.code == 1 && lines.len() != 1 {
        wrong.push(format!("{} lines on stderr, expected 1", lines.len()));
    }
    if !first.starts_with("error: ") {
        wrong.push("stderr does not start with `error: `".into());
    }
    for n in &case.needles {
        if !first.contains(n.as_str()) {
            wrong.push(format!("error line lacks {n:?}"));
        }
    }
    if !so.is_empty() {
        wrong.push("stdout is not empty".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n      stderr: {}\n      stdout: {}",
            wrong.join("; "),
            se.trim_end().replace('\n', "\n              "),
            so.trim_end().replace('\n', "\n              ")
        ))
    }
}

/// Whether the binary can run as `nobody` here and read the fixtures (needs root, and every
/// directory on the way to the binary, the runner and the fixtures searchable by others).
fn nobody_works(f: &Fixtures) -> Result<(), String> {
    if !is_root() {
        return Err("not root".into());
    }
    let probe = Case {
        name: "probe".into(),
        args: ["eval", "--model", &s(&f.model), "--data", &s(&f.raw)]
            .iter()
            .map(OsString::from)
            .collect(),
        code: 0,
        needles: vec![],
        how: Unprivileged,
    };
    let out = command(&probe, true)
        .spawn()
        .map_err(|e| format!("cannot start the binary as uid {NOBODY}: {e}"))
        .and_then(wait)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the binary cannot evaluate the fixtures as uid {NOBODY}: {}",
            stderr(&out).trim()
        ))
    }
}

/// What to put where a file is expected.
enum Bad {
    /// Nothing at all.
    Missing,
    /// A directory.
    Dir,
    /// A symbolic link to itself: `open` fails with ELOOP for every user.
    SymlinkLoop,
    /// A FIFO: opening one for reading blocks until a writer comes.
    Fifo,
    /// A file with these bytes and no permissions.
    Unreadable(Vec<u8>),
    /// A file with these bytes.
    Bytes(Vec<u8>),
    /// A copy of this file.
    Copy(PathBuf),
    /// A sparse file of `len` bytes starting with `head`.
    Sparse { head: Vec<u8>, len: u64 },
}

fn make(path: &Path, bad: &Bad) {
    match bad {
        Bad::Missing => {}
        Bad::Dir => fs::create_dir(path).unwrap(),
        Bad::SymlinkLoop => symlink(path, path).unwrap(),
        Bad::Fifo => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        }
        Bad::Unreadable(bytes) => {
            fs::write(path, bytes).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(0o000)).unwrap();
        }
        Bad::Bytes(bytes) => fs::write(path, bytes).unwrap(),
        Bad::Copy(src) => {
            fs::copy(src, path).unwrap();
        }
        Bad::Sparse { head, len } => {
            let f = fs::File::create(path).unwrap();
            std::io::Write::write_all(&mut &f, head).unwrap();
            f.set_len(*len).unwrap();
        }
    }
}

/// 8 GiB: far more than a 2 GB board has, and more than 32-bit sizes can express.
const GIB8: u64 = 8 << 30;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A 28×28 binary PGM.
fn pgm() -> Vec<u8> {
    let mut v = b"P5\n28 28\n255\n".to_vec();
    v.extend((0..784).map(|i| (i % 256) as u8));
    v
}

/// A 28×28 grayscale PNG.
fn png_digit() -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 28, 28);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(&[9; 784])
        .unwrap();
    out
}

/// A PNG whose header claims `w × h` pixels (valid signature, IHDR with a correct CRC, no
/// image data).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend_from_slice(&crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(chunk(b"IHDR", &ihdr));
    v.extend(chunk(b"IEND", &[]));
    v
}

/// The four standard files, `n` 28×28 images per split, in `dir`.
fn write_dataset(dir: &Path, n: u32) {
    fs::create_dir_all(dir).unwrap();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for split in ["train", "t10k"] {
        write(
            dir,
            &format!("{split}-images-idx3-ubyte"),
            &idx_images(n, 28, 28, n as usize * 784),
        );
        write(
            dir,
            &format!("{split}-labels-idx1-ubyte"),
            &idx_labels(n, &labels),
        );
    }
}

/// The fixtures every row draws on.
struct Fixtures {
    tmp: tempfile::TempDir,
    /// A good data set, gzipped (as downloaded): its info line must not precede an error.
    data: PathBuf,
    /// The same, raw.
    raw: PathBuf,
    /// A model trained on it.
    model: PathBuf,
    /// A checkpoint of the same run.
    ckpt: PathBuf,
    /// A good 28×28 PGM.
    digit: PathBuf,
    /// A good 28×28 PNG.
    digit_png: PathBuf,
}

impl Fixtures {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        // Searchable by `nobody`, for the unreadable rows.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let t = tmp.path();
        let raw = t.join("raw");
        write_dataset(&raw, 20);
        let data = t.join("data");
        fs::create_dir(&data).unwrap();
        for e in fs::read_dir(&raw).unwrap() {
            let e = e.unwrap();
            let name = format!("{}.gz", e.file_name().to_str().unwrap());
            write(&data, &name, &gzip(&fs::read(e.path()).unwrap()));
        }
        let (model, ckpt) = (t.join("m.safetensors"), t.join("ck.safetensors"));
        let out = run(&[
            "train",
            "--data",
            &s(&raw),
            "--iterations",
            "2",
            "--batch",
            "4",
            "--hidden",
            "8",
            "--save",
            &s(&model),
            "--checkpoint",
            &s(&ckpt),
        ]);
        assert!(out.status.success(), "fixture: {}", stderr(&out));
        let digit = t.join("digit.pgm");
        fs::write(&digit, pgm()).unwrap();
        let digit_png = t.join("digit.png");
        fs::write(&digit_png, png_digit()).unwrap();
        Fixtures {
            tmp,
            data,
            raw,
            model,
            ckpt,
            digit,
            digit_png,
        }
    }

    /// A fresh path `name` in the scratch directory holding `bad`.
    fn file(&self, name: &str, bad: &Bad) -> PathBuf {
        let p = self.tmp.path().join(name);
        make(&p, bad);
        p
    }

    /// A copy of the good data set in `name` with `stem` replaced by `bad`.
    fn data_with(&self, name: &str, stem: &str, bad: &Bad) -> PathBuf {
        let dir = self.tmp.path().join(name);
        write_dataset(&dir, 20);
        fs::remove_file(dir.join(stem)).unwrap();
        make(&dir.join(stem), bad);
        dir
    }
}

/// Every way the table breaks a file that should be a model or checkpoint.
fn bad_models(f: &Fixtures) -> Vec<Input> {
    let t = f.tmp.path();
    let mut huge_header = (1u64 << 62).to_le_bytes().to_vec();
    huge_header.extend_from_slice(b"{}");
    // A well-formed safetensors file whose metadata claims a network of 63 million parameters
    // (254 MB of floats) and holds none of its tensors.
    let meta = r#"{"__metadata__":{"format":"mnist-mlp/1","kind":"checkpoint","arch":"relu","hidden":"80000","input":"784","classes":"10"}}"#;
    let mut huge_net = (meta.len() as u64).to_le_bytes().to_vec();
    huge_net.extend_from_slice(meta.as_bytes());
    let model = fs::read(&f.model).unwrap();
    let not_st = "not a safetensors model";
    // A table: one bad input per line.
    #[rustfmt::skip]
    let inputs = vec![
        input("missing", t.join("none.st"), &["none.st", "no such file"], Plain),
        input("a directory", f.file("m-dir", &Bad::Dir), &["m-dir", "is a directory"], Plain),
        input("a symlink loop", f.file("m-loop", &Bad::SymlinkLoop), &["m-loop", "symbolic links"], Plain),
        input("a path through a file", f.model.join("x"), &["m.safetensors/x", "Not a directory"], Plain),
        input("unreadable (chmod 000)", f.file("m-000", &Bad::Unreadable(model.clone())), &["m-000", "Permission denied"], Unprivileged),
        input("a FIFO", f.file("m-fifo", &Bad::Fifo), &["m-fifo", "not a regular file"], Plain),
        input("/dev/null", "/dev/null".into(), &["/dev/null", "not a regular file"], Plain),
        input("empty", f.file("m-empty", &Bad::Bytes(vec![])), &["m-empty", "empty file"], Plain),
        input("an IDX images file", f.raw.join("t10k-images-idx3-ubyte"), &["t10k-images-idx3-ubyte", "an IDX images file", not_st], Plain),
        input("a gzipped IDX file", f.file("m.gz", &Bad::Bytes(gzip(&idx_labels(3, &[1, 2, 3])))), &["m.gz", "a gzip file", not_st], Plain),
        input("a PNG image", f.digit_png.clone(), &["digit.png", "a PNG image", not_st], Plain),
        input("a PGM image", f.digit.clone(), &["digit.pgm", "a PGM image", not_st], Plain),
        input("a safetensors header claiming 4 EiB", f.file("m-hdr", &Bad::Bytes(huge_header)), &["m-hdr", "header claims 4611686018427387904 bytes"], VmLimit),
        input("metadata claiming 63M parameters, no tensors", f.file("m-net", &Bad::Bytes(huge_net)), &["m-net", "fc1.weight is missing"], VmLimit),
        input("a sparse 8 GiB file", f.file("m-8g", &Bad::Sparse { head: model, len: GIB8 }), &["m-8g", "8589934592 bytes", "larger than"], VmLimit),
    ];
    inputs
}

/// A bad file inside an otherwise good data directory.
struct DataFile {
    what: &'static str,
    bad: Bad,
    needles: Vec<&'static str>,
    how: How,
}

fn data_file(what: &'static str, bad: Bad, needles: &[&'static str], how: How) -> DataFile {
    DataFile {
        what,
        bad,
        needles: needles.to_vec(),
        how,
    }
}

fn table(f: &Fixtures) -> Vec<Case> {
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
    let cases = table(&f);
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

/// Runs `args`; checks the exit code and, for failures, the one-line contract and `needles`.
fn expect(args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = run(args);
    let (so, se) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(code), "{args:?}: {se}");
    if code != 0 {
        assert_eq!(se.lines().count(), 1, "{args:?}: {se}");
        assert!(so.is_empty(), "{args:?}: stdout {so}");
    }
    for n in needles {
        assert!(se.contains(n), "{args:?}: expected {n:?} in {se}");
    }
    so
}

/// Each limit refuses a file over it with a message giving the limit and the flag, and the
/// flag raises it: the same file is then accepted.
#[test]
fn limits_name_their_flag_and_the_flag_raises_them() {
    let f = Fixtures::new();
    let t = f.tmp.path();
    let (raw, m) = (s(&f.raw), s(&f.model));

    // --max-images (20 test images) and --max-image-side (28×28): one under refuses, the
    // exact count accepts.
    let eval = |flag: &str, value: &str, code: i32, needles: &[&str]| {
        expect(
            &["eval", "--model", &m, "--data", &raw, flag, value],
            code,
            needles,
        )
    };
    let images = "t10k-images-idx3-ubyte";
    eval(
        "--max-images",
        "19",
        1,
        &[
            images,
            "holds 20 images, over the limit of 19 images",
            "raise the limit with --max-images",
        ],
    );
    assert!(eval("--max-images", "20", 0, &[]).contains("Accuracy on test set"));
    eval(
        "--max-image-side",
        "27",
        1,
        &[
            images,
            "images of 28×28 pixels are larger than allowed, over the limit of 27 pixels",
            "--max-image-side",
        ],
    );
    assert!(eval("--max-image-side", "28", 0, &[]).contains("Accuracy on test set"));

    // The default --max-images on a (sparse) file of 1,000,001 images; raised, the file is
    // read and fails on the next check instead (its 20 labels).
    let over = f.data_with(
        "limit-1000001",
        "t10k-images-idx3-ubyte",
        &Bad::Sparse {
            head: idx_images(1_000_001, 28, 28, 0),
            len: 16 + 1_000_001 * 784,
        },
    );
    let over = s(&over);
    expect(
        &["eval", "--model", &m, "--data", &over],
        1,
        &[
            "holds 1000001 images, over the limit of 1000000 images",
            "--max-images",
        ],
    );
    expect(
        &[
            "eval",
            "--model",
            &m,
            "--data",
            &over,
            "--max-images",
            "1000001",
        ],
        1,
        &["holds 1000001 images but", "holds 20 labels"],
    );

    // --max-file-mib, .gz data: 2,000 test images decompress to 1,568,016 bytes.
    let gz = t.join("limit-gz");
    fs::create_dir(&gz).unwrap();
    let labels: Vec<u8> = (0..2000).map(|i| (i % 10) as u8).collect();
    write(
        &gz,
        "t10k-images-idx3-ubyte.gz",
        &gzip(&idx_images(2000, 28, 28, 2000 * 784)),
    );
    write(
        &gz,
        "t10k-labels-idx1-ubyte.gz",
        &gzip(&idx_labels(2000, &labels)),
    );
    let gz = s(&gz);
    expect(
        &["eval", "--model", &m, "--data", &gz, "--max-file-mib", "1"],
        1,
        &[
            "t10k-images-idx3-ubyte.gz: 2000 images of 28×28 decompress to 1568016 bytes",
            "over the limit of 1 MiB",
            "--max-file-mib",
        ],
    );
    let out = expect(
        &["eval", "--model", &m, "--data", &gz, "--max-file-mib", "2"],
        0,
        &["decompressed", "gunzip them"],
    );
    assert!(out.contains("Accuracy on test set"), "{out}");

    // --max-file-mib, a model of 1.3 MB (784-400-10), for eval and for resume.
    let big = t.join("big.safetensors");
    let model = mnist_mlp::model::Mlp::new(
        mnist_mlp::model::Arch::Relu,
        &[784, 400, 10],
        &mut mnist_mlp::rng::Rng::new(1),
    )
    .unwrap();
    mnist_mlp::model_file::save_model(&big, &model, &[]).unwrap();
    let big = s(&big);
    expect(
        &[
            "eval",
            "--model",
            &big,
            "--data",
            &raw,
            "--max-file-mib",
            "1",
        ],
        1,
        &[
            "big.safetensors: the model file is",
            "over the limit of 1 MiB",
            "--max-file-mib",
        ],
    );
    expect(
        &[
            "train",
            "--data",
            &raw,
            "--resume",
            &big,
            "--max-file-mib",
            "1",
        ],
        1,
        &["big.safetensors", "over the limit of 1 MiB"],
    );
    expect(
        &[
            "eval",
            "--model",
            &big,
            "--data",
            &raw,
            "--max-file-mib",
            "2",
        ],
        0,
        &[],
    );

    // The limits and their defaults are documented in --help.
    for cmd in ["train", "eval", "predict"] {
        let help = expect(&[cmd, "--help"], 0, &[]);
        for n in [
            "--max-images <N>",
            "[default: 1000000]",
            "--max-image-side <N>",
            "[default: 1024]",
            "--max-file-mib <MIB>",
            "[default: 512]",
        ] {
            assert!(help.contains(n), "{cmd} --help lacks {n:?}:\n{help}");
        }
    }
}

/// A checkpoint holds a model: `--init` takes one (it was refused as "unexpected tensor
/// 'adam.m'"), as `eval` and `predict` do.
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
/// any work, and every file is left as it was. Before the check, `--metrics` on a mapped
/// data file truncated it under the run (killed by SIGBUS), and `--save` replaced it with a
/// model. Writing a model back over its `--init` file (fine-tuning in place) stays allowed.
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
