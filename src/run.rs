//! The sweep: every round of every variant, in parallel, reusing stored rounds, then the
//! reports. Every number is independent of `jobs` and of the order rounds finish in: each
//! round owns its seeds, device and RNGs, and results are put back in task order.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::compile::plan;
use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::report::{self, Protocol, RoundRecord};
use crate::spec::{self, Spec};
use crate::store::RoundStore;
use crate::train::{RoundConfig, Status, train_round};

/// Everything `lesser run` can be told.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub specs: Vec<PathBuf>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub repeats: Option<usize>,
    pub epochs: Option<usize>,
    pub only: Vec<String>,
    pub pairs: usize,
    pub jobs: usize,
    /// Ignore stored rounds (they are still written).
    pub fresh: bool,
    /// Print nothing but errors.
    pub quiet: bool,
}

/// What a sweep did.
#[derive(Debug, Clone)]
pub struct SweepOutcome {
    pub records: Vec<RoundRecord>,
    /// Test-error statistics per variant, in report order.
    pub summaries: Vec<report::Summary>,
    /// Rounds trained in this run (the rest came from the store).
    pub trained: usize,
    pub seconds: f64,
}

/// The crate version, part of every store key: a change that alters any number a round
/// produces (kernels, summation order, optimizer) must bump it, or a rerun would reuse rounds
/// stored by the old code.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// SplitMix64's finalizer: spreads seeds so nearby inputs give unrelated streams.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a name: a stable per-variant number.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The data seed of round `r`: the same for every variant.
pub fn data_seed(round: usize) -> u64 {
    mix(0x6461_7461, round as u64)
}

/// The initialization seed of round `r` of `spec`.
pub fn init_seed(spec: &Spec, round: usize) -> u64 {
    mix(mix(name_hash(&spec.name), spec.train.seed), round as u64)
}

/// Loads every spec under `paths`; all bad ones are reported together, one line each.
pub fn load_specs(paths: &[PathBuf]) -> std::result::Result<Vec<Spec>, Vec<Error>> {
    let files = spec::spec_files(paths).map_err(|e| vec![e])?;
    let (mut specs, mut errors) = (Vec::new(), Vec::new());
    for f in files {
        match spec::load(&f).and_then(|s| match s {
            Some(s) => plan(&s).map(|_| Some(s)),
            None => Ok(None),
        }) {
            Ok(Some(s)) => specs.push(s),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

/// SHA-256 of each data file, and one hash over all of them.
fn hash_data(files: &[PathBuf]) -> Result<(Vec<(String, String)>, String)> {
    let mut all = Sha256::new();
    let mut each = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let sum: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        all.update(sum.as_bytes());
        let name = f
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        each.push((name, sum));
    }
    let all: String = all
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((each, all))
}

/// Reports progress: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    quiet: bool,
}

impl Progress {
    fn new(total: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.enable_steady_tick(std::time::Duration::from_millis(500));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} rounds  {elapsed} elapsed, ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            b
        });
        Progress {
            bar,
            total,
            done: 0,
            quiet,
        }
    }

    fn round(&mut self, r: &RoundRecord) {
        self.done += 1;
        let what = match r.result.status {
            Status::Ok => format!("test error {}", report::pct(r.result.test_error)),
            Status::Diverged { epoch } => format!("diverged in epoch {epoch}"),
        };
        let line = format!(
            "{} round {}: {what} ({:.1} s)",
            r.variant, r.round, r.seconds
        );
        match &self.bar {
            Some(b) => {
                b.set_message(line);
                b.inc(1);
            }
            None if !self.quiet => eprintln!("[{}/{}] {line}", self.done, self.total),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Where the round store of an output directory lives.
pub fn store_path(out: &Path) -> PathBuf {
    out.join(".cache").join("rounds.csv")
}

/// The specs `opts` select, with its overrides applied; all problems reported before any
/// training.
fn select_specs(opts: &SweepOptions) -> Result<Vec<Spec>> {
    let mut specs = load_specs(&opts.specs).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Error::Usage(lines.join("\n"))
    })?;
    if !opts.only.is_empty() {
        if let Some(missing) = opts
            .only
            .iter()
            .find(|n| !specs.iter().any(|s| &s.name == *n))
        {
            return Err(Error::Usage(format!("--only {missing}: no such variant")));
        }
        specs.retain(|s| opts.only.contains(&s.name));
    }
    if let Some(bad) = specs.iter().find(|s| s.name.contains([',', '"', '\n'])) {
        return Err(Error::spec(
            &bad.path,
            "",
            "a variant name may not contain , \" or a newline",
        ));
    }
    if opts.repeats == Some(0) || opts.epochs == Some(0) || opts.pairs == 0 {
        return Err(Error::Usage(
            "--repeats, --epochs and --pairs must be at least 1".into(),
        ));
    }
    for s in &mut specs {
        s.train.repeats = opts.repeats.unwrap_or(s.train.repeats);
        s.train.epochs = opts.epochs.unwrap_or(s.train.epochs);
    }
    Ok(specs)
}

/// Loads the data and checks that both pools hold enough images for `pairs` pairs.
fn load_data(opts: &SweepOptions) -> Result<Mnist> {
    let data = Mnist::load(&opts.data)?;
    for (pool, what) in [(&data.train, "train"), (&data.test, "test")] {
        if 2 * opts.pairs > pool.len() {
            return Err(Error::Protocol(format!(
                "--pairs {}: {} {what} pairs need {} images, the {what} pool of {} holds {}",
                opts.pairs,
                opts.pairs,
                2 * opts.pairs,
                opts.data.display(),
                pool.len()
            )));
        }
    }
    Ok(data)
}

/// One finished round, and whether it trained now (rather than coming from the store).
type Finished = (RoundRecord, bool);

/// Writes `results.csv`, `REPORT.md` and `timing.csv`, each atomically.
fn write_reports(
    opts: &SweepOptions,
    summaries: &[report::Summary],
    results: &[Finished],
    protocol: &Protocol,
) -> Result<()> {
    let records: Vec<RoundRecord> = results.iter().map(|r| r.0.clone()).collect();
    // Each round's own training time, also for rounds reused from the store, so that a
    // rerun that trains nothing leaves this file as it was.
    let mut timing = String::from("variant,round,seconds\n");
    for (r, _) in results {
        timing.push_str(&format!("{},{},{:.3}\n", r.variant, r.round, r.seconds));
    }
    report::write_atomic(
        &opts.out.join("results.csv"),
        &report::results_csv(&records),
    )?;
    report::write_atomic(
        &opts.out.join("REPORT.md"),
        report::report_md(summaries, protocol).as_bytes(),
    )?;
    report::write_atomic(&opts.out.join("timing.csv"), timing.as_bytes())
}

/// Runs the sweep and writes `results.csv`, `REPORT.md` and `timing.csv` into `opts.out`.
pub fn sweep(opts: &SweepOptions) -> Result<SweepOutcome> {
    let start = Instant::now();
    let specs = select_specs(opts)?;
    let data = load_data(opts)?;
    let (data_files, data_hash) = hash_data(&data.files)?;

    // Every round, in report order, with its record minus the result.
    let mut tasks = Vec::new();
    // Expected cost of each task, to start the longest rounds first.
    let mut cost = Vec::new();
    for s in &specs {
        let plan = plan(s)?;
        let params = plan.params;
        let hash = s.hash();
        for round in 0..s.train.repeats {
            cost.push(plan.work_per_pair() * s.train.epochs);
            tasks.push((
                s,
                RoundRecord {
                    variant: s.name.clone(),
                    round,
                    data_seed: data_seed(round),
                    init_seed: init_seed(s, round),
                    spec_hash: hash.clone(),
                    data_hash: data_hash.clone(),
                    params,
                    epochs: s.train.epochs,
                    pairs: opts.pairs,
                    version: VERSION.to_string(),
                    result: crate::train::RoundResult {
                        final_train_loss: f64::NAN,
                        train_error: None,
                        test_error: None,
                        digit_test_error: None,
                        status: Status::Ok,
                    },
                    seconds: 0.0,
                },
            ));
        }
    }

    // Fail on an unusable output directory now, not after the first round has trained.
    let cache_dir = store_path(&opts.out)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::fs::create_dir_all(&cache_dir).map_err(|e| Error::io(&cache_dir, e))?;
    let store = Mutex::new(RoundStore::open(&store_path(&opts.out))?);
    let mut results: Vec<Option<Finished>> = vec![None; tasks.len()];
    let mut todo = Vec::new();
    {
        let st = store.lock().expect("store lock");
        for (i, (_, rec)) in tasks.iter().enumerate() {
            match st.get(&rec.key()).filter(|_| !opts.fresh) {
                Some(stored) => {
                    let mut r = stored.clone();
                    // The stored round is the same computation; only the name may differ.
                    r.variant = rec.variant.clone();
                    r.round = rec.round;
                    results[i] = Some((r, false));
                }
                None => todo.push(i),
            }
        }
    }
    let progress = Mutex::new(Progress::new(todo.len(), opts.quiet));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {} threads: {e}", opts.jobs)))?;
    // Longest rounds first, each thread taking the next round as it becomes free: the
    // threads finish close together instead of one running the last long round alone.
    todo.sort_by_key(|&i| std::cmp::Reverse(cost[i]));
    let next = AtomicUsize::new(0);
    let trained: Mutex<Vec<(usize, Result<RoundRecord>)>> = Mutex::new(Vec::new());
    let run_one = |i: usize| -> Result<RoundRecord> {
        let (spec, rec) = &tasks[i];
        let t = Instant::now();
        train_round(
            spec,
            &data,
            RoundConfig {
                pairs: opts.pairs,
                epochs: spec.train.epochs,
                data_seed: rec.data_seed,
                init_seed: rec.init_seed,
            },
        )
        .and_then(|result| {
            let r = RoundRecord {
                result,
                seconds: t.elapsed().as_secs_f64(),
                ..rec.clone()
            };
            store.lock().expect("store lock").append(&r)?;
            progress.lock().expect("progress lock").round(&r);
            Ok(r)
        })
    };
    pool.scope(|scope| {
        for _ in 0..pool.current_num_threads() {
            scope.spawn(|_| {
                while let Some(&i) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = run_one(i);
                    trained.lock().expect("results lock").push((i, r));
                }
            });
        }
    });
    let trained = trained.into_inner().expect("results lock");
    progress.lock().expect("progress lock").finish();
    for (i, r) in trained {
        results[i] = Some((r?, true));
    }
    let results: Vec<Finished> = results
        .into_iter()
        .map(|r| r.expect("every round ran or was stored"))
        .collect();
    store.lock().expect("store lock").compact()?;
    let protocol = Protocol {
        pairs: opts.pairs,
        train_pool: data.train.len(),
        test_pool: data.test.len(),
        data_files,
        data_hash,
        version: VERSION.to_string(),
    };
    let summaries: Vec<_> = specs
        .iter()
        .map(|s| {
            let rounds: Vec<&RoundRecord> = results
                .iter()
                .map(|r| &r.0)
                .filter(|r| r.variant == s.name)
                .collect();
            report::summarize(&s.name, &s.description, &rounds)
        })
        .collect();
    write_reports(opts, &summaries, &results, &protocol)?;
    Ok(SweepOutcome {
        summaries,
        trained: results.iter().filter(|r| r.1).count(),
        records: results.into_iter().map(|r| r.0).collect(),
        seconds: start.elapsed().as_secs_f64(),
    })
}
