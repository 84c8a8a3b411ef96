//! `lesser`: run seeded, repeated experiments on small networks that compare pairs of MNIST
//! digits, and report honest statistics.
//!
//! Modules, in the order data flows: [`data`] (IDX files, pair sets), [`ops`] (CNN operations
//! on dfdx), [`spec`] (TOML variants), [`compile`] (specs into networks), [`train`] (one
//! round), [`run`] (the parallel sweep), [`report`] (CSV and Markdown), [`cli`] (commands).

pub mod cli;
pub mod compile;
pub mod data;
pub mod diff;
pub mod error;
pub mod ops;
pub mod report;
pub mod run;
pub mod spec;
pub mod store;
pub mod train;

pub use error::{Error, Result};
