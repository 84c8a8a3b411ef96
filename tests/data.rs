//! The shipped data, the IDX loader's errors, and the pair-set protocol.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use lesser::data::{Dataset, Pool, Samples, idx};
use lesser::spec::Task;
use sha2::{Digest, Sha256};

const PIXELS: usize = 196;

/// The seed study's train and test pairs of `seed`, `n` in each.
fn generate_pair_sets(
    train: &Pool,
    test: &Pool,
    n: usize,
    seed: u64,
) -> lesser::error::Result<(Samples, Samples)> {
    lesser::data::draw(train, test, Task::SEED, (n, n), seed)
}

/// The pairs' classes, two to a pair.
fn pairs_of(s: &Samples) -> Vec<[u8; 2]> {
    s.classes.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

#[test]
fn shipped_files_match_the_sums_in_data_readme() {
    let readme = std::fs::read_to_string(shipped().join("../README.md")).unwrap();
    let mut checked = 0;
    for line in readme.lines().filter(|l| l.contains("-ubyte.gz`")) {
        let cells: Vec<&str> = line
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        let (name, sum) = (cells[1], cells[3]);
        let bytes = std::fs::read(shipped().join(name)).unwrap();
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, sum, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn shipped_data_loads_with_the_split_sizes() {
    let m = Dataset::load(&shipped(), 2).unwrap();
    assert_eq!((m.train.len(), m.test.len()), (6006, 3994));
    assert_eq!(m.train.images.len(), 6006 * PIXELS);
    // Pooled values stay raw bytes' means: 0..255 in steps of 0.25, and digits have ink.
    assert!(
        m.train
            .images
            .iter()
            .all(|&v| (0.0..=255.0).contains(&v) && (v * 4.0).fract() == 0.0)
    );
    assert!(m.test.image(0).iter().any(|&v| v > 200.0));
    // Files are written digit by digit: labels are sorted, and every digit is present.
    assert!(m.train.labels.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*m.test.labels.last().unwrap(), 9);
}

fn idx_bytes(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(payload);
    v
}

/// Writes a data directory with `n` 28x28 images and the given labels (plain, not gzipped).
fn write_dir(dir: &Path, images: &[u8], n_images: u32, labels: &[u8]) {
    for split in ["train", "t10k"] {
        std::fs::write(
            dir.join(format!("{split}-images-idx3-ubyte")),
            idx_bytes(0x803, &[n_images, 28, 28], images),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{split}-labels-idx1-ubyte")),
            idx_bytes(0x801, &[labels.len() as u32], labels),
        )
        .unwrap();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lesser-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn plain_and_gzipped_files_load_alike() {
    let d = temp_dir("plain");
    let pixels: Vec<u8> = (0..3 * 784).map(|i| (i % 256) as u8).collect();
    write_dir(&d, &pixels, 3, &[1, 2, 3]);
    let plain = Dataset::load(&d, 2).unwrap();
    // Gzip the train images under the .gz name.
    let raw = std::fs::read(d.join("train-images-idx3-ubyte")).unwrap();
    std::fs::remove_file(d.join("train-images-idx3-ubyte")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    std::fs::write(d.join("train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    let zipped = Dataset::load(&d, 2).unwrap();
    assert_eq!(plain.train.images, zipped.train.images);
    // First pooled pixel: mean of bytes 0, 1, 28, 29.
    assert_eq!(plain.train.images[0], (0.0 + 1.0 + 28.0 + 29.0) / 4.0);
}

fn load_err(d: &Path) -> String {
    Dataset::load(d, 2).unwrap_err().to_string()
}

#[test]
fn bad_files_give_clear_errors() {
    let pixels = vec![0u8; 2 * 784];
    // Bad magic number.
    let d = temp_dir("magic");
    write_dir(&d, &pixels, 2, &[1, 2]);
    std::fs::write(
        d.join("train-labels-idx1-ubyte"),
        idx_bytes(0x803, &[2], &[1, 2]),
    )
    .unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("bad magic number 0x00000803"),
        "{e}"
    );
    // Truncated data.
    let d = temp_dir("trunc");
    write_dir(&d, &pixels[..784 + 100], 2, &[1, 2]);
    let e = load_err(&d);
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("truncated data"),
        "{e}"
    );
    // Truncated header.
    std::fs::write(d.join("train-images-idx3-ubyte"), [0, 0, 8]).unwrap();
    assert!(load_err(&d).contains("truncated header"));
    // Truncated gzip stream.
    let d = temp_dir("gz");
    write_dir(&d, &pixels, 2, &[1, 2]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(d.join("t10k-images-idx3-ubyte")).unwrap())
        .unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::remove_file(d.join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::write(
        d.join("t10k-images-idx3-ubyte.gz"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("gzip"),
        "{e}"
    );
    // Image/label count mismatch.
    let d = temp_dir("count");
    write_dir(&d, &pixels, 2, &[1, 2, 3]);
    let e = load_err(&d);
    assert!(e.contains("3 labels for the 2 images"), "{e}");
    // A test label beyond the training labels' classes.
    let d = temp_dir("label");
    write_dir(&d, &pixels, 2, &[1, 2]);
    std::fs::write(
        d.join("t10k-labels-idx1-ubyte"),
        idx_bytes(0x801, &[2], &[1, 12]),
    )
    .unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("t10k-labels-idx1-ubyte: label 12 at index 1 is beyond the 3 classes"),
        "{e}"
    );
    // One class only.
    let d = temp_dir("oneclass");
    write_dir(&d, &pixels, 2, &[4, 4]);
    let e = load_err(&d);
    assert!(
        e.contains("train-labels-idx1-ubyte: every label is 4: a study needs 2 classes"),
        "{e}"
    );
    // Missing file and missing directory.
    let d = temp_dir("missing");
    write_dir(&d, &pixels, 2, &[1, 2]);
    std::fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("missing"),
        "{e}"
    );
    let e = load_err(&d.join("nope"));
    assert!(e.contains("nope") && e.contains("not found"), "{e}");
    // A reader error, not a panic, for an empty file too.
    std::fs::write(d.join("x"), []).unwrap();
    assert!(idx::read_labels(&d.join("x")).is_err());
}

#[test]
fn pair_sets_follow_the_protocol() {
    let m = Dataset::load(&shipped(), 2).unwrap();
    let (train, test) = generate_pair_sets(&m.train, &m.test, 1000, 7).unwrap();
    for set in [&train, &test] {
        assert_eq!(set.len(), 1000);
        assert_eq!(set.input.len(), 1000 * 2 * PIXELS);
        for (i, (&t, c)) in set.target.iter().zip(pairs_of(set)).enumerate() {
            assert_eq!(t, u16::from(c[0] <= c[1]), "pair {i}");
        }
    }
    // No image twice within a set: every 196-value image is distinct (the pools hold no
    // exact duplicates, so equal images would mean reuse).
    let mut seen = std::collections::HashSet::new();
    for img in train.input.chunks_exact(PIXELS) {
        let key: Vec<u32> = img.iter().map(|v| v.to_bits()).collect();
        assert!(seen.insert(key), "an image is used twice");
    }
    // Train and test images come from disjoint pools.
    for img in test.input.chunks_exact(PIXELS).take(200) {
        let key: Vec<u32> = img.iter().map(|v| v.to_bits()).collect();
        assert!(!seen.contains(&key), "a test image is in the train set");
    }
    // Classes match the pools' labels: the first digit of the first pair is found in the pool.
    let first = &train.input[..PIXELS];
    let at = (0..m.train.len())
        .find(|&i| m.train.image(i) == first)
        .unwrap();
    assert_eq!(m.train.labels[at], train.classes[0]);
}

#[test]
fn pair_sets_are_deterministic_and_seed_dependent() {
    let m = Dataset::load(&shipped(), 2).unwrap();
    let a = generate_pair_sets(&m.train, &m.test, 300, 11).unwrap();
    let b = generate_pair_sets(&m.train, &m.test, 300, 11).unwrap();
    let c = generate_pair_sets(&m.train, &m.test, 300, 12).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
    // Pinned values: the same seed gives these classes on every machine.
    let classes: Vec<[u8; 2]> = pairs_of(&a.0)[..3].to_vec();
    assert_eq!(classes, PINNED_SEED_11);
}

const PINNED_SEED_11: [[u8; 2]; 3] = [[7, 5], [8, 2], [0, 9]];

#[test]
fn target_rate_is_near_055() {
    // P(c0 <= c1) for uniform classes is 55/100.
    let m = Dataset::load(&shipped(), 2).unwrap();
    let (mut ones, mut total) = (0usize, 0usize);
    for seed in 0..40 {
        let (train, test) = generate_pair_sets(&m.train, &m.test, 1000, seed).unwrap();
        for set in [train, test] {
            ones += set.target.iter().map(|&t| t as usize).sum::<usize>();
            total += set.len();
        }
    }
    let rate = ones as f64 / total as f64;
    assert!((rate - 0.55).abs() < 0.01, "rate {rate}");
}

#[test]
fn too_many_pairs_is_an_error() {
    let m = Dataset::load(&shipped(), 2).unwrap();
    let e = generate_pair_sets(&m.train, &m.test, 2000, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2000 test samples need 4000 images"), "{e}");
}

#[test]
fn a_multi_member_gzip_file_loads_whole() {
    let d = temp_dir("members");
    let pixels: Vec<u8> = (0..4 * 784).map(|i| (i % 251) as u8).collect();
    write_dir(&d, &pixels, 4, &[1, 2, 3, 4]);
    let plain = Dataset::load(&d, 2).unwrap();
    // Two gzip members back to back (as `cat a.gz b.gz` makes): valid gzip, one stream.
    let raw = std::fs::read(d.join("train-images-idx3-ubyte")).unwrap();
    std::fs::remove_file(d.join("train-images-idx3-ubyte")).unwrap();
    let member = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let (a, b) = raw.split_at(1000);
    let mut two = member(a);
    two.extend(member(b));
    std::fs::write(d.join("train-images-idx3-ubyte.gz"), two).unwrap();
    assert_eq!(
        Dataset::load(&d, 2).unwrap().train.images,
        plain.train.images
    );
}

/// Any size loads; test images of another size than the training images blame the test file,
/// and a pooling factor larger than the images is refused.
#[test]
fn image_sizes_come_from_the_header() {
    let d = temp_dir("size");
    let mut v = 0x803u32.to_be_bytes().to_vec();
    for x in [2u32, 20, 20] {
        v.extend(x.to_be_bytes());
    }
    v.extend(vec![0u8; 2 * 400]);
    write_dir(&d, &vec![0u8; 2 * 784], 2, &[1, 2]);
    std::fs::write(d.join("t10k-images-idx3-ubyte"), &v).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("t10k-images-idx3-ubyte: images are 20x20, the training images are 28x28"),
        "{e}"
    );
    std::fs::write(d.join("train-images-idx3-ubyte"), &v).unwrap();
    let m = Dataset::load(&d, 3).unwrap();
    assert_eq!((m.stored, m.side, m.classes), ((20, 20), (6, 6), 3));
    assert_eq!(m.sizes(), "20x20 -> 6x6");
    assert_eq!(Dataset::load(&d, 1).unwrap().sizes(), "20x20");
    let e = Dataset::load(&d, 21).unwrap_err().to_string();
    assert!(
        e.contains("images are 20x20: data.pool = 21 leaves no pixel"),
        "{e}"
    );
}

/// Only the bytes the header promises are decompressed: a gzip file whose payload is
/// followed by a long run of zeros and then cut short loads, where decompressing it whole
/// would meet the cut (or, uncut, inflate gigabytes).
#[test]
fn a_gzip_file_is_read_only_as_far_as_its_header_promises() {
    let d = temp_dir("trailing");
    let pixels: Vec<u8> = (0..3 * 784).map(|i| (i % 256) as u8).collect();
    write_dir(&d, &pixels, 3, &[1, 2, 3]);
    let plain = Dataset::load(&d, 2).unwrap();
    let mut raw = std::fs::read(d.join("train-images-idx3-ubyte")).unwrap();
    std::fs::remove_file(d.join("train-images-idx3-ubyte")).unwrap();
    raw.extend(vec![0u8; 64 << 20]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let mut bytes = gz.finish().unwrap();
    bytes.truncate(bytes.len() - 64);
    std::fs::write(d.join("train-images-idx3-ubyte.gz"), bytes).unwrap();
    assert_eq!(
        Dataset::load(&d, 2).unwrap().train.images,
        plain.train.images
    );
}

/// The data hash is the data's, not its files': the same digits gzipped or not train the
/// same rounds, which the second run finds in the store.
#[test]
fn the_same_data_gzipped_or_not_has_one_hash() {
    let d = temp_dir("samehash");
    std::fs::create_dir_all(d.join("plain")).unwrap();
    std::fs::create_dir_all(d.join("specs")).unwrap();
    for e in std::fs::read_dir(shipped()).unwrap() {
        let p = e.unwrap().path();
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let name = p.file_stem().unwrap();
        std::fs::write(d.join("plain").join(name), raw).unwrap();
    }
    let spec = "[model]\naux_loss = 1.0\ncompare = \"argmax\"\n\
                digit = [{ layer = \"flatten\" }, { layer = \"linear\", out = 10 }]\n\
                [train]\nepochs = 1\nrepeats = 1\n";
    std::fs::write(d.join("specs/s.toml"), spec).unwrap();
    let run = |data: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lesser"))
            .current_dir(&d)
            .args(["run", "--pairs", "50", "--data"])
            .arg(data)
            .output()
            .unwrap()
    };
    assert!(run(&shipped()).status.success());
    let zipped = std::fs::read_to_string(d.join("reports/results.csv")).unwrap();
    let out = run(&d.join("plain"));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("1 rounds (0 trained, 1 reused"), "{e}");
    assert_eq!(
        std::fs::read_to_string(d.join("reports/results.csv")).unwrap(),
        zipped
    );
}
