//! `lesser`: run seeded, repeated experiments on small networks that compare pairs of MNIST
//! digits, and report honest statistics.
//!
//! Modules, in the order data flows: [`data`] (IDX files, pair sets), [`ops`] (CNN operations
//! on dfdx), [`spec`] (TOML variants), [`compile`] (specs into networks), [`train`] (one
//! round), [`variants`] (specs loaded, planned and ordered), [`search`] (a spec's search run
//! step by step), [`run`] (the parallel sweep),
//! [`record`] (one round's record and its written forms), [`store`] (stored rounds),
//! [`report`] (CSV and Markdown), [`diff`] (paired comparisons), [`cli`] (commands); [`fs`]
//! holds the file helpers, [`kernels`] the arithmetic every op runs on, one file per
//! instruction set.

pub mod breakdown;
pub mod cli;
pub mod compile;
pub mod data;
pub mod diff;
pub mod error;
pub mod fs;
pub mod hash;
pub mod kernels;
pub mod ops;
pub mod par;
pub mod record;
pub mod report;
pub mod run;
pub mod search;
pub mod seeds;
pub mod shard;
pub mod spec;
pub mod store;
pub mod train;
pub mod variants;
pub mod weights;

pub use error::{Error, Result};
