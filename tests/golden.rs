//! Numbers guarded: one short round of a direct, an SHres, a joint and a batch-normalized
//! network, pinned to their exact results (losses, errors and the hash of every trained
//! weight). A change that alters any number a round computes fails here until the golden rows
//! are updated, a new entry of [`HISTORY`] pins them under a new version, and `Cargo.toml`
//! (whose version keys the round store) carries that version.

mod common;

use common::{lesser, read, stderr, temp};

/// Every version's golden rows, as the digest of [`GOLDEN`], oldest first. An entry is never
/// edited: new numbers are a new entry with a new version, and the crate's version is the
/// last entry's, so stored rounds of older code are never reused.
const HISTORY: &[(&str, &str)] = &[
    ("0.5.0", "2fbd3dbddefced3d"),
    ("0.6.0", "1eca84a55e868316"),
    ("0.7.0", "5008dd81abfc52c5"),
];

const HEAD: &str = r#"head = [
  { layer = "linear", in = 20, out = 12 },
  { layer = "relu" },
  { layer = "linear", out = 8 },
  { layer = "relu" },
  { layer = "linear", out = 2 },
]"#;

const TRAIN: &str = "[train]\nepochs = 2\nrepeats = 1\n";

/// The shipped seed networks, written out so that editing `specs/` does not touch this test.
fn specs() -> [(&'static str, String); 5] {
    [
        (
            "direct",
            format!(
                r#"[model]
weight_sharing = true
aux_loss = 1.0
asymmetry = 1.0
digit = [
  {{ layer = "conv2d", out = 6, kernel = 3 }},
  {{ layer = "relu" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "conv2d", out = 16, kernel = 3 }},
  {{ layer = "relu" }},
  {{ layer = "flatten" }},
  {{ layer = "linear", in = 256, out = 120 }},
  {{ layer = "relu" }},
  {{ layer = "linear", out = 84 }},
  {{ layer = "relu" }},
  {{ layer = "linear", out = 10 }},
]
{HEAD}
{TRAIN}"#
            ),
        ),
        (
            "shres",
            format!(
                r#"[model]
aux_loss = 1.0
digit = [
  {{ layer = "conv_transpose2d", out = 1, kernel = 2, stride = 2 }},
  {{ layer = "conv2d", out = 1, kernel = 3, padding = 1 }},
  {{ layer = "threshold", threshold = 0.0, value = 0.0 }},
  {{ layer = "conv2d", out = 6, kernel = 5 }},
  {{ layer = "relu" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "conv2d", out = 16, kernel = 5 }},
  {{ layer = "relu" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "flatten" }},
  {{ layer = "linear", in = 256, out = 120 }},
  {{ layer = "relu" }},
  {{ layer = "linear", out = 84 }},
  {{ layer = "relu" }},
  {{ layer = "linear", out = 10 }},
]
{HEAD}
{TRAIN}"#
            ),
        ),
        (
            "joint",
            format!(
                r#"[model]
topology = "joint"
joint = [
  {{ layer = "conv2d", out = 32, kernel = 3 }},
  {{ layer = "relu" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "conv2d", out = 64, kernel = 3 }},
  {{ layer = "relu" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "flatten" }},
  {{ layer = "linear", in = 256, out = 200 }},
  {{ layer = "relu" }},
  {{ layer = "linear", out = 2 }},
]
{TRAIN}"#
            ),
        ),
        (
            "normed",
            format!(
                r#"[model]
weight_sharing = true
aux_loss = 1.0
compare = "argmax"
digit = [
  {{ layer = "conv2d", out = 8, kernel = 3, padding = 1 }},
  {{ layer = "batch_norm" }},
  {{ layer = "relu" }},
  {{ layer = "conv2d", out = 8, kernel = 3, padding = 1 }},
  {{ layer = "batch_norm" }},
  {{ layer = "relu" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "conv2d", out = 16, kernel = 3, padding = 1 }},
  {{ layer = "batch_norm" }},
  {{ layer = "relu" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "flatten" }},
  {{ layer = "dropout", p = 0.3 }},
  {{ layer = "linear", out = 32 }},
  {{ layer = "relu" }},
  {{ layer = "linear", out = 10 }},
]
{TRAIN}"#
            ),
        ),
        (
            "smooth",
            format!(
                r#"[model]
weight_sharing = true
aux_loss = 1.0
compare = "probability"
digit = [
  {{ layer = "conv2d", out = 4, kernel = 3 }},
  {{ layer = "tanh" }},
  {{ layer = "max_pool2d", kernel = 2 }},
  {{ layer = "flatten" }},
  {{ layer = "linear", out = 16 }},
  {{ layer = "sigmoid" }},
  {{ layer = "linear", out = 10 }},
]
{TRAIN}"#
            ),
        ),
    ]
}

/// `results.csv` of the four rounds, as computed by lesser `GOLDEN_VERSION`.
const GOLDEN: &str = "\
variant,round,data_seed,init_seed,spec_hash,params,epochs,pairs,final_train_loss,train_error,test_error,digit_test_error,status,data_hash,weights,validation_error
direct,0,1568258933646402701,6719111690831233255,e3f50e6d7f4e647a,43168,2,200,5.901608,0.3800,0.4700,0.6950,ok,ebe3745c2eea2d5c,bca8720f8ed58808,
joint,0,1568258933646402701,5909164201995360025,d052a66152223033,70906,2,200,0.662305,0.3800,0.4700,,ok,ebe3745c2eea2d5c,c8b0db452a73d416,
normed,0,1568258933646402701,9189377110556862554,ffbc67fa343b58d5,6866,2,200,4.493897,0.3850,0.4650,0.8950,ok,ebe3745c2eea2d5c,0504683757199e4a,
shres,0,1568258933646402701,568299159138014435,352363b510e6fcdd,89256,2,200,5.450815,0.6200,0.5300,0.8850,ok,ebe3745c2eea2d5c,725e5778dc11fee2,
smooth,0,1568258933646402701,974200242439952639,b1f28914cdfacbc5,2530,2,200,4.589328,0.3800,0.4700,0.9025,ok,ebe3745c2eea2d5c,b9e4ed543264456e,
";

#[test]
fn short_rounds_give_the_pinned_numbers() {
    let d = temp("golden", "rounds");
    for (name, text) in specs() {
        std::fs::write(d.join(format!("specs/{name}.toml")), text).unwrap();
    }
    let out = lesser(&d, &["--pairs", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = read(d.join("reports/results.csv"));
    assert_eq!(
        got, GOLDEN,
        "the numbers of a round changed: if that is intended, update GOLDEN, add its digest \
         under a new version to HISTORY and bump the version in Cargo.toml"
    );
}

/// The history pins every version's numbers once, and the crate is at its last entry.
#[test]
fn the_golden_rows_are_pinned_under_the_crate_version() {
    let digest = lesser::hash::short_of(GOLDEN.as_bytes());
    let last = HISTORY.last().unwrap();
    assert_eq!(
        lesser::run::VERSION,
        last.0,
        "Cargo.toml's version must be HISTORY's last"
    );
    assert_eq!(
        last.1, digest,
        "GOLDEN changed: pin it as a new entry of HISTORY under a new version"
    );
    for (i, (v, d)) in HISTORY.iter().enumerate() {
        let later = &HISTORY[i + 1..];
        assert!(later.iter().all(|(w, e)| w != v && e != d), "{v} repeats");
    }
}
