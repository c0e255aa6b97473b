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

//!
//! The tests, by theme: `table` (every kind of bad file for every argument), `limits` (each
//! limit names its flag, which raises it), `outputs` (outputs that would destroy inputs, and a
//! checkpoint accepted where a model is). This file holds the fixtures they share.

#[path = "../common/mod.rs"]
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

mod limits;
mod outputs;
mod table;
