//! The sweep: the task list, the store lookup, the parallel schedule, progress, then the
//! reports. Every number is independent of `jobs` and of the order rounds finish in: each
//! round owns its seeds, device and RNGs, and results are put back in task order.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::diff;
use crate::error::{Error, Result};
use crate::record::{RoundKey, RoundRecord, Status};
use crate::report::errors::{self, ErrorView, Wrong};
use crate::report::{self, Protocol, Study, Summary};
use crate::search;
use crate::seeds;
pub use crate::shard::Shard;
use crate::store::RoundStore;
use crate::train::{RoundConfig, train_round};
use crate::variants::{self, Searched, Variant};

/// Everything `lesser run` can be told.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub specs: Vec<PathBuf>,
    pub out: PathBuf,
    pub repeats: Option<usize>,
    pub epochs: Option<usize>,
    pub only: Vec<String>,
    pub jobs: usize,
    /// Threads in all: the rounds running split their passes over the threads no round
    /// holds (`par`).
    pub threads: usize,
    /// Ignore stored rounds (they are still written).
    pub fresh: bool,
    /// Refuse a variant whose round is estimated to need more GiB than this.
    pub max_memory: f64,
    /// `--set` overrides (with `--data`, `--pairs`, `--epochs`, `--repeats`) and the grid
    /// size limit.
    pub load: variants::LoadOptions,
    /// Train only this share of the rounds, and write no reports (`lesser report` merges).
    pub shard: Option<Shard>,
}

/// What a sweep did.
#[derive(Debug, Clone)]
pub struct SweepOutcome {
    /// Rounds of the sweep (of this shard, with `--shard`).
    pub rounds: usize,
    pub records: Vec<RoundRecord>,
    /// Test-error statistics per variant, in report order.
    pub summaries: Vec<Summary>,
    /// Rounds trained in this run (the rest came from the store).
    pub trained: usize,
    pub seconds: f64,
    /// Searches (by stem) whose next phase waits for trial rounds other shards train.
    pub waiting: Vec<String>,
    /// Search trial rounds trained in this run (not among `rounds`).
    pub trials_trained: usize,
}

/// The crate version, part of every store key: a change that alters any number a round
/// produces (kernels, summation order, optimizer) must bump it, or a rerun would reuse rounds
/// stored by the old code. `tests/golden.rs` fails until both are updated together.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Most rounds trained at once: far above any core count `lesser` is meant for, low enough
/// that a typo does not ask the system for a hundred thousand threads.
pub const MAX_JOBS: usize = 1024;

/// The most threads `--threads` starts, for the same reason.
pub const MAX_THREADS: usize = 1024;

/// Told of a sweep's rounds as they train (from any thread): the display is the caller's.
pub trait Progress: Sync {
    /// `rounds` are about to train.
    fn begin(&self, _rounds: usize) {}
    /// A round finished and is stored.
    fn round(&self, _record: &RoundRecord) {}
    /// Every round finished.
    fn end(&self) {}
}

/// No progress shown.
pub struct Silent;

impl Progress for Silent {}

/// Where the round store of an output directory lives (a directory, a file per round).
pub fn store_path(out: &Path) -> PathBuf {
    out.join(".cache").join("rounds")
}

/// Checks the options that do not depend on the specs.
fn check_options(opts: &SweepOptions) -> Result<()> {
    if opts.repeats == Some(0) || opts.epochs == Some(0) {
        return Err(Error::Usage(
            "--repeats and --epochs must be at least 1".into(),
        ));
    }
    for (flag, value, most) in [
        ("--epochs", opts.epochs, crate::spec::MAX_EPOCHS),
        ("--repeats", opts.repeats, crate::spec::MAX_REPEATS),
    ] {
        if let Some(n) = value.filter(|&n| n > most) {
            return Err(Error::Usage(format!("{flag} {n}: at most {most}")));
        }
    }
    check_between("--jobs", opts.jobs, MAX_JOBS)?;
    check_between("--threads", opts.threads, MAX_THREADS)?;
    variants::check_max_memory(opts.max_memory)
}

/// `n` must be between 1 and `most`.
fn check_between(flag: &str, n: usize, most: usize) -> Result<()> {
    if (1..=most).contains(&n) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{flag} {n}: must be between 1 and {most}"
    )))
}

/// The variants `opts` select, with its overrides applied; all problems reported before any
/// training.
fn select_variants(opts: &SweepOptions) -> Result<(Vec<Variant>, Vec<Searched>)> {
    check_options(opts)?;
    let loaded = variants::load_valid(&opts.specs, &opts.load)?;
    let (selected, searches) = variants::select(loaded, &opts.only)?;
    if selected.is_empty() && searches.is_empty() {
        return Err(Error::Usage(
            "no variant to run: every spec file named is abstract (only there to be extended)"
                .into(),
        ));
    }
    for v in selected.iter().chain(searches.iter().map(|s| &s.base)) {
        variants::check_memory(v, opts.max_memory)?;
    }
    Ok((selected, searches))
}

/// One round to run: its variant, its index and the key its result is stored under.
struct Task<'a> {
    variant: &'a Variant,
    round: usize,
    key: RoundKey,
    /// Expected cost, to start the longest rounds first.
    cost: usize,
}

impl Task<'_> {
    fn record(&self, result: crate::record::RoundResult, seconds: f64) -> RoundRecord {
        RoundRecord::new(
            &self.variant.spec.name,
            self.round,
            // An ensemble's round has every member's parameters.
            self.variant.plan.params * self.variant.spec.train.ensemble,
            self.key.clone(),
            result,
            seconds,
        )
    }
}

/// The store key of round `round` of `v`.
pub fn round_key(v: &Variant, round: usize) -> RoundKey {
    let s = &v.spec;
    RoundKey {
        spec_hash: s.hash(),
        data_seed: if v.trial {
            seeds::trial_data_seed(round)
        } else {
            seeds::data_seed(round)
        },
        init_seed: seeds::init_seed(&s.name, s.train.seed, round),
        data_hash: v.data.hash.clone(),
        pairs: s.data.train_pairs,
        epochs: s.train.epochs,
        version: VERSION.to_string(),
    }
}

/// Every round of every variant, in report order.
fn task_list(selected: &[Variant]) -> Vec<Task<'_>> {
    let mut tasks = Vec::new();
    for v in selected {
        for round in 0..v.spec.train.repeats {
            tasks.push(Task {
                variant: v,
                round,
                key: round_key(v, round),
                cost: v.plan.work_per_pair() * v.spec.train.epochs,
            });
        }
    }
    tasks
}

/// The stored record of each task (unless `fresh`), and the indices of those still to train.
/// With `whole`, a round that finished counts as stored only with where its errors are, and
/// with its weights when its spec keeps them (older stores lack the one, runs without
/// `--keep-weights` the other): such a round is trained again, to the same numbers.
fn lookup(
    tasks: &[Task],
    store: &RoundStore,
    fresh: bool,
    whole: bool,
) -> (Vec<Option<RoundRecord>>, Vec<usize>) {
    let mut found = Vec::with_capacity(tasks.len());
    let mut todo = Vec::new();
    let whole = |t: &Task, r: &RoundRecord| {
        if !whole || r.result.status != Status::Ok {
            return true;
        }
        let weights = !t.variant.spec.train.keep_weights || store.weights_path(&t.key).is_file();
        weights && r.result.breakdown.is_some()
    };
    for (i, t) in tasks.iter().enumerate() {
        match store.get(&t.key).filter(|r| !fresh && whole(t, r)) {
            Some(stored) => {
                // The stored round is the same computation; only the name may differ.
                let mut r = stored.clone();
                r.variant = t.variant.spec.name.clone();
                r.round = t.round;
                found.push(Some(r));
            }
            None => {
                found.push(None);
                todo.push(i);
            }
        }
    }
    (found, todo)
}

/// Trains the tasks at `todo`, `jobs` at once on `threads` threads, longest first, storing each
/// round the moment it finishes. Returns `(task index, record)` per round, in no particular
/// order.
fn train_all(
    tasks: &[Task],
    mut todo: Vec<usize>,
    opts: &SweepOptions,
    store: &Mutex<RoundStore>,
    progress: &dyn Progress,
) -> Result<Vec<(usize, RoundRecord)>> {
    progress.begin(todo.len());
    let pool = thread_pool(opts.threads)?;
    // Each worker takes the next round as it becomes free, and the threads no worker holds
    // take pieces of the rounds running: at the end of a sweep, the last rounds get every
    // core. No more workers than threads: a thread waiting inside a round could otherwise
    // take a whole worker's rounds.
    todo.sort_by_key(|&i| std::cmp::Reverse(tasks[i].cost));
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Result<RoundRecord>)>> = Mutex::new(Vec::new());
    let run_one = |t: &Task| -> Result<RoundRecord> {
        let clock = Instant::now();
        let cfg = RoundConfig {
            epochs: t.key.epochs,
            data_seed: t.key.data_seed,
            init_seed: t.key.init_seed,
        };
        let round = train_round(t.variant, &t.variant.data, cfg)?;
        let r = t.record(round.result, clock.elapsed().as_secs_f64());
        if t.variant.spec.train.keep_weights && !round.nets.is_empty() {
            // Before the record: a record is never stored without the weights it promises.
            let path = lock(store).weights_path(&t.key);
            let nets: Vec<&crate::compile::Network> = round.nets.iter().collect();
            let bytes = crate::weights::to_bytes(&nets, weights_metadata(&r))?;
            crate::fs::write_atomic(&path, &bytes)?;
        }
        lock(store).put(&r)?;
        progress.round(&r);
        Ok(r)
    };
    pool.scope(|scope| {
        for _ in 0..opts.jobs.min(opts.threads) {
            scope.spawn(|_| {
                while let Some(&i) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = run_one(&tasks[i]);
                    lock(&done).push((i, r));
                }
            });
        }
    });
    progress.end();
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.into_iter().map(|(i, r)| r.map(|r| (i, r))).collect()
}

/// A pool of `threads` threads for rounds to run in (and split their passes over, `par`).
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    check_between("--threads", threads, MAX_THREADS)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::System(format!("cannot start {threads} threads: {e}")))
}

/// What a kept-weights file says of its round.
fn weights_metadata(r: &RoundRecord) -> std::collections::HashMap<String, String> {
    [
        ("variant", r.variant.clone()),
        ("round", r.round.to_string()),
        ("spec_hash", r.spec_hash.clone()),
        ("data_seed", r.data_seed.to_string()),
        ("init_seed", r.init_seed.to_string()),
        ("data_hash", r.data_hash.clone()),
        ("pairs", r.pairs.to_string()),
        ("epochs", r.epochs.to_string()),
        ("version", r.version.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Locks `m`, also after a thread panicked while holding it (the data is still whole: every
/// critical section here is a single push or append).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Test-error statistics per variant, in report order; the comparisons with baselines
/// adjusted together by Holm's method.
pub fn summaries(selected: &[Variant], records: &[RoundRecord]) -> Vec<Summary> {
    let mut out = summaries_alone(selected, records);
    let against = out
        .iter_mut()
        .filter_map(|m| m.against.as_mut().map(|(_, c)| c));
    diff::correct(against.collect(), diff::Correction::Holm, 0.05);
    out
}

/// Each variant's statistics, its baseline comparison made on its own.
fn summaries_alone(selected: &[Variant], records: &[RoundRecord]) -> Vec<Summary> {
    let rounds_of = |name: &str| -> Vec<RoundRecord> {
        records
            .iter()
            .filter(|r| r.variant == name)
            .cloned()
            .collect()
    };
    selected
        .iter()
        .map(|v| {
            let rounds: Vec<&RoundRecord> = records
                .iter()
                .filter(|r| r.variant == v.spec.name)
                .collect();
            let against = v.spec.baseline.as_ref().and_then(|b| {
                let (old, new) = (rounds_of(b), rounds_of(&v.spec.name));
                if old.is_empty() || new.is_empty() {
                    return None;
                }
                let mut c = diff::compare(&v.spec.name, &old, &new, 0.05);
                // Another spec by design: not news.
                c.spec_changed = false;
                Some((b.clone(), c))
            });
            Summary {
                // From the plan: a variant with no round yet still has its parameters.
                params: v.plan.params * v.spec.train.ensemble,
                grid: v.spec.grid.clone(),
                reference: v.spec.reference.clone(),
                weights: v.plan.weights * v.spec.train.ensemble,
                against,
                study: format!("{} on {}", v.spec.task.short(), v.spec.data.name),
                ..report::summarize(&v.spec.name, &v.spec.description, &rounds)
            }
        })
        .collect()
}

/// The studies of `selected`: each task on each dataset with its sample counts, and the
/// variants that run it, in report order.
fn studies(selected: &[Variant]) -> Vec<Study> {
    let mut out: Vec<Study> = Vec::new();
    for v in selected {
        let (s, d) = (&v.spec, &v.data);
        let study = Study {
            task: s.task,
            train: s.data.train_pairs,
            test: s.data.test_pairs,
            name: s.data.name.clone(),
            items: s.data.items.clone(),
            dir: d.dir.display().to_string(),
            sizes: d.sizes(),
            side: d.side,
            classes: d.classes,
            train_pool: d.train.len(),
            test_pool: d.test.len(),
            files: d.files.clone(),
            hash: d.hash.clone(),
            variants: Vec::new(),
        };
        let at = match out.iter().position(|o| o.same(&study)) {
            Some(i) => i,
            None => {
                out.push(study);
                out.len() - 1
            }
        };
        out[at].variants.push(s.name.clone());
    }
    out
}

/// Where `v`'s test errors are over its `records`, with its most confidently wrong test
/// samples redrawn from their rounds' data seeds.
fn error_view(v: &Variant, records: &[RoundRecord]) -> Option<ErrorView> {
    let rounds: Vec<&RoundRecord> = records
        .iter()
        .filter(|r| r.variant == v.spec.name)
        .collect();
    let mut worst: Vec<(f64, &RoundRecord, u32)> = rounds
        .iter()
        .flat_map(|r| {
            let b = r.result.breakdown.iter();
            b.flat_map(move |b| b.worst.iter().map(move |&(i, p)| (p, *r, i)))
        })
        .collect();
    worst.sort_by(|a, b| {
        (b.0.total_cmp(&a.0))
            .then(a.1.round.cmp(&b.1.round))
            .then(a.2.cmp(&b.2))
    });
    worst.truncate(crate::breakdown::WORST);
    let task = v.spec.task;
    let mut gallery = Vec::new();
    for (p, r, i) in worst {
        let seed = (r.data_seed, seeds::TEST_PAIRS);
        let n = v.spec.data.test_pairs;
        let Ok(set) = crate::data::sample_set(&v.data.test, task, n, seed, "test") else {
            continue;
        };
        let Some(i) = Some(i as usize).filter(|&i| i < set.len()) else {
            continue;
        };
        gallery.push(Wrong {
            round: r.round,
            images: set
                .sample(i)
                .chunks(set.pixels)
                .map(<[f32]>::to_vec)
                .collect(),
            classes: set.sample_classes(i).to_vec(),
            target: set.target[i],
            probability: p,
        });
    }
    errors::view(&v.spec.name, task.kind, &rounds, gallery, v.data.side)
}

/// Writes every report of `records` (in task order) into `opts.out`; their summaries.
fn write_all(
    opts: &SweepOptions,
    selected: &[Variant],
    records: &[RoundRecord],
    searches: &[search::Outcome],
) -> Result<Vec<Summary>> {
    let summaries = summaries(selected, records);
    let protocol = Protocol {
        studies: studies(selected),
        version: VERSION.to_string(),
        overrides: opts
            .load
            .overrides
            .iter()
            .filter(|o| o.recorded)
            .map(|o| o.text.clone())
            .collect(),
    };
    let errors: Vec<ErrorView> = selected
        .iter()
        .filter_map(|v| error_view(v, records))
        .collect();
    let files = report::Files {
        records,
        summaries: &summaries,
        protocol: &protocol,
        errors: &errors,
        searches,
    };
    report::write_reports(&opts.out, &files)?;
    Ok(summaries)
}

/// Trains the rounds of `tasks` the store lacks (this shard's share of them, with
/// `--shard`): each task's record where there is one, and how many rounds trained.
fn train_tasks(
    tasks: &[Task],
    opts: &SweepOptions,
    store: &Mutex<RoundStore>,
    progress: &dyn Progress,
) -> Result<(Vec<Option<RoundRecord>>, usize)> {
    let (mut found, mut todo) = lookup(tasks, &lock(store), opts.fresh, true);
    if let Some(mine) = opts.shard.map(|s| s.deal(&costs(tasks))) {
        todo.retain(|&i| mine[i]);
    }
    let trained = train_all(tasks, todo, opts, store, progress)?;
    let count = trained.len();
    for (i, r) in trained {
        found[i] = Some(r);
    }
    Ok((found, count))
}

fn costs(tasks: &[Task]) -> Vec<usize> {
    tasks.iter().map(|t| t.cost).collect()
}

/// One phase of a search in a sweep: every round of `variants`, or `None` while rounds
/// dealt to other shards are not stored yet.
fn search_phase(
    variants: &[Variant],
    opts: &SweepOptions,
    store: &Mutex<RoundStore>,
    progress: &dyn Progress,
    trained: &mut usize,
) -> Result<Option<Vec<RoundRecord>>> {
    let tasks = task_list(variants);
    let (mut found, count) = train_tasks(&tasks, opts, store, progress)?;
    *trained += count;
    if opts.shard.is_some() && found.iter().any(Option::is_none) {
        // The other shards store into the same directory: read what they have stored.
        let now = RoundStore::open(&store_path(&opts.out))?;
        let (theirs, _) = lookup(&tasks, &now, false, true);
        for (f, t) in found.iter_mut().zip(theirs) {
            if f.is_none() {
                *f = t;
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Runs the sweep and writes its reports into `opts.out`, telling `progress` of each round.
/// Searches run first: their confirmed variants join the sweep.
pub fn sweep(opts: &SweepOptions, progress: &dyn Progress) -> Result<SweepOutcome> {
    let start = Instant::now();
    let (mut selected, searches) = select_variants(opts)?;
    // Opening the store creates the output directory: an unusable one fails now, not after
    // the first round has trained.
    let store = Mutex::new(RoundStore::open(&store_path(&opts.out))?);
    let mut trials_trained = 0;
    let mut phase = |v: &[Variant]| search_phase(v, opts, &store, progress, &mut trials_trained);
    let (outcomes, waiting) = search::run_all(&searches, &mut selected, &mut phase)?;
    let tasks = task_list(&selected);
    let (found, count) = train_tasks(&tasks, opts, &store, progress)?;
    if let Some(mine) = opts.shard.map(|s| s.deal(&costs(&tasks))) {
        // A shard reports nothing: the others are still writing. `lesser report` merges.
        let records: Vec<RoundRecord> = found
            .into_iter()
            .zip(&mine)
            .filter_map(|(r, &m)| r.filter(|_| m))
            .collect();
        return Ok(SweepOutcome {
            rounds: mine.iter().filter(|&&m| m).count(),
            summaries: Vec::new(),
            trained: count,
            records,
            seconds: start.elapsed().as_secs_f64(),
            waiting,
            trials_trained,
        });
    }
    let records: Vec<RoundRecord> = found.into_iter().flatten().collect();
    drop(tasks);
    let summaries = write_all(opts, &selected, &records, &outcomes)?;
    Ok(SweepOutcome {
        rounds: records.len(),
        summaries,
        trained: count,
        records,
        seconds: start.elapsed().as_secs_f64(),
        waiting,
        trials_trained,
    })
}

/// The searches as far as `store` holds their trial rounds, training nothing: their outcomes
/// (their confirmed variants added to `selected`), and the stems of those it holds only part
/// of.
pub fn searches_stored(
    searches: &[Searched],
    selected: &mut Vec<Variant>,
    store: &RoundStore,
) -> Result<(Vec<search::Outcome>, Vec<String>)> {
    let mut phase = |v: &[Variant]| -> Result<Option<Vec<RoundRecord>>> {
        let (found, _) = lookup(&task_list(v), store, false, false);
        Ok(found.into_iter().collect())
    };
    search::run_all(searches, selected, &mut phase)
}

/// What a rebuild found.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub summaries: Vec<Summary>,
    /// Rounds found in the store.
    pub found: usize,
    /// `variant round r` of every round of the selected specs not in the store.
    pub missing: Vec<String>,
}

/// Rebuilds every report of `opts.out` from its round store, training nothing: the same
/// files a sweep that trained those rounds writes, for the rounds the store holds.
pub fn rebuild(opts: &SweepOptions) -> Result<Rebuilt> {
    let path = store_path(&opts.out);
    // An `--out` that is a file, or a link that loops, is an I/O failure, not an empty store.
    match std::fs::metadata(&opts.out) {
        Ok(m) if !m.is_dir() => {
            let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
            return Err(Error::io(&opts.out, e));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&opts.out, e)),
        _ => {}
    }
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no stored rounds (no {}); `lesser run --out {}` stores them",
            opts.out.display(),
            path.display(),
            opts.out.display()
        )));
    }
    let (mut selected, searches) = select_variants(opts)?;
    let store = RoundStore::open(&path)?;
    let (outcomes, waiting) = searches_stored(&searches, &mut selected, &store)?;
    let tasks = task_list(&selected);
    let (found, todo) = lookup(&tasks, &store, false, false);
    let missing = waiting
        .iter()
        .map(|stem| format!("trial rounds of the search {stem}"))
        .chain(todo.iter().map(|&i| {
            let t = &tasks[i];
            format!("{} round {}", t.variant.spec.name, t.round)
        }))
        .collect();
    let records: Vec<RoundRecord> = found.into_iter().flatten().collect();
    if records.is_empty() {
        // Reports of other options are still right: leave them, and say what would match.
        return Err(nothing_stored(opts, &store));
    }
    drop(tasks);
    let summaries = write_all(opts, &selected, &records, &outcomes)?;
    Ok(Rebuilt {
        summaries,
        found: records.len(),
        missing,
    })
}

/// Why a rebuild found no round: the options the store's rounds were trained with.
fn nothing_stored(opts: &SweepOptions, store: &RoundStore) -> Error {
    let mut held: Vec<String> = store
        .records()
        .map(|r| {
            format!(
                "--pairs {} with {} epochs (lesser {})",
                r.pairs, r.epochs, r.version
            )
        })
        .collect();
    held.sort();
    held.dedup();
    let held = if held.is_empty() {
        "nothing".to_string()
    } else {
        held.join("; ")
    };
    Error::Usage(format!(
        "{}: no stored round matches these options, so the reports are left as they are; \
         the store holds rounds of {held}",
        opts.out.display()
    ))
}
