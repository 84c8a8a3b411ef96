//! Every seed and random stream of a sweep, in one place: the reproducibility contract.
//!
//! - Round `r` of every variant draws its pairs from [`data_seed`]`(r)`: the train pairs from
//!   stream [`TRAIN_PAIRS`], the test pairs from stream [`TEST_PAIRS`]. Variants are compared
//!   on identical data, round by round.
//! - Round `r` of a variant initializes its network from [`init_seed`] (its name, its spec's
//!   `train.seed` and `r`); member `m` of an ensemble from [`member_seed`], which is the
//!   round's own seed for the first member, so an ensemble of one is the plain round.
//! - A network's seed `s` feeds: its parameters ([`INIT`], in layer order), its
//!   dropout masks (dfdx's `Cpu` seeded with `s`), the batch order ([`SHUFFLE`]) and the
//!   epoch's re-pairing and augmentation ([`DRAWS`]).
//!
//! - A search's trials train on [`trial_data_seed`]`(r)`, a stream no reported round draws
//!   from, so that the rounds that confirm a search's winners are data it never saw. Trial `t`
//!   of a search with `seed = s` draws its point from [`search_seed`]`(s, t)`, stream
//!   [`POINTS`]; a TPE batch `b` from `search_seed(s, b)`, stream [`TPE`].
//!
//! ChaCha8 gives the same numbers on every machine, and each round owns its generators, so
//! a round's numbers depend on nothing else: not `--jobs`, the order rounds finish in, the
//! shard that runs it, or the kernel. Changing anything here changes every round: bump the
//! version (`tests/golden.rs` fails until then).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The stream of a round's data seed that draws its training pairs.
pub const TRAIN_PAIRS: u64 = 0;
/// The stream of a round's data seed that draws its test pairs.
pub const TEST_PAIRS: u64 = 1;
/// The stream of a network's seed that draws its initial parameters.
pub const INIT: u64 = 0;
/// The stream of a network's seed that orders each epoch's batches.
pub const SHUFFLE: u64 = 1;
/// The stream of a network's seed that re-pairs and augments each epoch's digits.
pub const DRAWS: u64 = 2;

/// The stream of a search seed that draws a random trial's point.
pub const POINTS: u64 = 3;
/// The stream of a search seed that draws a TPE batch's points.
pub const TPE: u64 = 4;

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

/// The data seed of round `round`: the same for every variant.
pub fn data_seed(round: usize) -> u64 {
    mix(0x6461_7461, round as u64)
}

/// The data seed of round `round` of a search trial: of its own stream, never a reported
/// round's.
pub fn trial_data_seed(round: usize) -> u64 {
    mix(0x7365_6172_6368, round as u64)
}

/// The seed of trial (or TPE batch) `n` of a search with `seed`.
pub fn search_seed(seed: u64, n: usize) -> u64 {
    mix(mix(0x7472_6961_6c73, seed), n as u64)
}

/// The initialization seed of round `round` of the variant `name` whose spec says
/// `train.seed = base`.
pub fn init_seed(name: &str, base: u64, round: usize) -> u64 {
    mix(mix(name_hash(name), base), round as u64)
}

/// The seed of member `m` of an ensemble whose round has `init_seed`.
pub fn member_seed(init_seed: u64, m: usize) -> u64 {
    if m == 0 {
        init_seed
    } else {
        init_seed ^ (m as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// The generator of `stream` of `seed`.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
