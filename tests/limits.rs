//! Every count has a limit checked before anything is allocated or trained, and input that
//! cannot work gets one line naming the option or the file, with exit 2 (3 for I/O).

mod common;

use common::{command, data, lesser, read, setup, stderr, store_dir, store_files};

/// One line on stderr that says `says`, and the exit code `code`.
fn refused(out: &std::process::Output, code: i32, says: &str) {
    let e = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{e}");
    assert!(e.contains(says) && e.lines().count() == 1, "{says}: {e}");
}

#[test]
fn counts_beyond_their_limits_are_refused_first() {
    let d = setup("limits", "counts");
    let huge = "18446744073709551615";
    refused(
        &lesser(&d, &["--epochs", huge]),
        2,
        "--epochs 18446744073709551615: at most 100000",
    );
    refused(
        &lesser(&d, &["--repeats", "100000000"]),
        2,
        "--repeats 100000000: at most 100000",
    );
    refused(
        &lesser(&d, &["--max-grid", huge]),
        2,
        "--max-grid 18446744073709551615: at most 100000",
    );
    refused(
        &lesser(&d, &["--max-memory", "0"]),
        2,
        "--max-memory 0: must be a positive",
    );
    let bench = |args: &[&str]| {
        command(&d)
            .args(["bench", "--data", &data(), "--pairs", "50"])
            .args(args)
            .output()
            .unwrap()
    };
    refused(
        &bench(&["--max-memory", "0"]),
        2,
        "--max-memory 0: must be a positive",
    );
    refused(
        &bench(&["--rounds", huge]),
        2,
        "--rounds 18446744073709551615: at most 1000",
    );
    // A memory limit below a round's need says it in units that show the need.
    let out = lesser(&d, &["--max-memory", "0.00001"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(" MiB (batch_size 50)"),
        "{}",
        stderr(&out)
    );
    assert!(!store_dir(&d).exists());
}

#[test]
fn a_rule_sees_every_override() {
    let d = setup("limits", "rules");
    let spec = read(d.join("specs/alpha.toml")).replace(
        "epochs = 1",
        "epochs = 10\nschedule = { kind = \"cosine\", warmup = 9 }",
    );
    std::fs::write(d.join("specs/alpha.toml"), spec).unwrap();
    let out = lesser(&d, &["--epochs", "2", "--only", "alpha"]);
    refused(
        &out,
        2,
        "alpha.toml:15:31: train.schedule.warmup: 9 epochs of warm-up leave none of the 2 epochs",
    );
    // Holding pairs out needs pairs to hold out.
    let out = lesser(
        &d,
        &[
            "--pairs",
            "1",
            "--set",
            "train.validation=0.5",
            "--only",
            "beta",
        ],
    );
    refused(
        &out,
        2,
        "--set train.validation=0.5: train.validation: holding pairs out needs 2 training \
         pairs at least, data.train_pairs is 1",
    );
    let out = command(&d)
        .args([
            "bench",
            "--data",
            &data(),
            "--pairs",
            "1",
            "--set",
            "train.validation=0.5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn runs_of_nothing_and_outputs_that_are_files_fail_clearly() {
    let d = setup("limits", "nothing");
    std::fs::write(
        d.join("specs/alpha.toml"),
        "abstract = true\n[train]\nepochs = 1\n",
    )
    .unwrap();
    std::fs::remove_file(d.join("specs/beta.toml")).unwrap();
    refused(
        &lesser(&d, &[]),
        2,
        "no variant to run: every spec file named is abstract",
    );
    std::fs::write(d.join("afile"), "x").unwrap();
    let out = command(&d)
        .args(["report", "--data", &data(), "--out", "afile"])
        .output()
        .unwrap();
    refused(&out, 3, "afile: not a directory");
}

#[test]
fn only_keeps_the_baselines_of_what_it_selects() {
    let d = setup("limits", "only");
    let beta = format!("baseline = \"alpha\"\n{}", read(d.join("specs/beta.toml")));
    std::fs::write(d.join("specs/beta.toml"), beta).unwrap();
    let out = lesser(&d, &["--only", "beta"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read(d.join("reports/REPORT.md"));
    assert!(
        report.contains("## Against baselines") && report.contains("| beta | alpha |"),
        "{report}"
    );
}

#[test]
fn cut_store_files_and_abandoned_temporary_files_do_not_last() {
    let d = setup("limits", "store");
    assert!(lesser(&d, &["--only", "alpha"]).status.success());
    let files = store_files(&store_dir(&d));
    // A store file cut short, inside its curve: damage, so its round is trained again.
    let line = read(files[0].clone());
    std::fs::write(&files[0], &line[..line.len() - 8]).unwrap();
    // A temporary file a killed writer left an hour ago, and one being written now.
    let old = store_dir(&d).join(".x.csv.1.0.tmp");
    let new = store_dir(&d).join(".y.csv.1.0.tmp");
    for p in [&old, &new] {
        std::fs::write(p, "partial").unwrap();
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let out = lesser(&d, &["--only", "alpha"]);
    assert!(
        stderr(&out).contains("2 rounds (1 trained, 1 reused"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        common::without_seconds(&read(files[0].clone())),
        common::without_seconds(&line)
    );
    assert!(!old.exists() && new.exists());
}
