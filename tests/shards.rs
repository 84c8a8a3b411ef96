//! Sweeps split into shards: concurrent `lesser run --shard K/N` processes on one store, merged
//! by `lesser report` into the reports of a single run; a shard killed mid-way loses only its
//! unfinished rounds.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{command, data, lesser, read, setup, stderr, store_dir, store_files};

/// Every report file of `dir` but timing.csv (wall clock), by name.
fn reports(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["REPORT.md", "results.csv", "curves.csv"] {
        out.push((name.to_string(), read(dir.join(name))));
    }
    let figures = std::fs::read_dir(dir.join("figures")).unwrap();
    let errors = std::fs::read_dir(dir.join("figures/errors")).unwrap();
    for e in figures.chain(errors) {
        let p = e.unwrap().path();
        if p.is_dir() {
            continue;
        }
        out.push((
            p.display()
                .to_string()
                .replace(&dir.display().to_string(), ""),
            read(p),
        ));
    }
    out.sort();
    out
}

fn more_rounds(d: &Path, repeats: usize, epochs: usize) {
    for name in ["alpha", "beta"] {
        let p = d.join(format!("specs/{name}.toml"));
        let text = read(p.clone())
            .replace("repeats = 2", &format!("repeats = {repeats}"))
            .replace("epochs = 1", &format!("epochs = {epochs}"));
        std::fs::write(&p, text).unwrap();
    }
}

#[test]
fn shards_merged_by_report_equal_a_single_run() {
    let d = setup("shards", "merge");
    more_rounds(&d, 5, 2);
    let single = lesser(&d, &["--pairs", "200", "--out", "single"]);
    assert!(single.status.success(), "{}", stderr(&single));
    // Three shards at once, on one store.
    let children: Vec<_> = (0..3)
        .map(|k| {
            command(&d)
                .args(["run", "--data", &data(), "--pairs", "200", "--jobs", "1"])
                .args(["--shard", &format!("{k}/3")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut shares = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains("`lesser report --out reports` merges"), "{e}");
        // "shard K/3: N rounds (N trained, 0 reused ..."
        let line = e.lines().find(|l| l.starts_with("shard ")).unwrap();
        let n: usize = line
            .split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        shares.push(n);
    }
    // 10 rounds dealt longest first: 4, 3, 3; no shard writes reports.
    assert_eq!(shares, [4, 3, 3]);
    assert!(!d.join("reports/results.csv").exists());
    assert_eq!(store_files(&store_dir(&d)).len(), 10);
    let out = command(&d)
        .args(["report", "--data", &data(), "--pairs", "200"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("10 rounds reported from the store, 0 missing"));
    assert_eq!(reports(&d.join("reports")), reports(&d.join("single")));
}

#[test]
fn a_killed_shard_loses_only_its_unfinished_rounds() {
    let d = setup("shards", "kill");
    more_rounds(&d, 10, 6);
    let args = [
        "run",
        "--data",
        &data(),
        "--pairs",
        "400",
        "--jobs",
        "1",
        "--shard",
        "0/2",
    ];
    let mut child = command(&d)
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while store_files(&store_dir(&d)).len() < 2 {
        assert!(t.elapsed().as_secs() < 120, "no round finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = store_files(&store_dir(&d)).len();
    assert!((2..10).contains(&kept), "{kept} rounds stored");
    // The other shard runs whole; the killed one, rerun, trains only what it had not stored.
    let out = command(&d)
        .args(["run", "--data", &data(), "--pairs", "400", "--shard", "1/2"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("shard 1/2: 10 rounds (10 trained, 0 reused"),
        "{}",
        stderr(&out)
    );
    let out = command(&d).args(args).output().unwrap();
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "shard 0/2: 10 rounds ({} trained, {kept} reused",
            10 - kept
        )),
        "{e}"
    );
    let out = command(&d)
        .args(["report", "--data", &data(), "--pairs", "400"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("20 rounds reported from the store, 0 missing"),
        "{}",
        stderr(&out)
    );
}
