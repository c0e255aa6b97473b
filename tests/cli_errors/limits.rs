//! Limits: each refuses a file over it, naming itself and the flag that raises it.

use super::*;

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
