//! Shards: a sweep's rounds dealt out to several processes (a Slurm array, a Kubernetes
//! indexed Job, or by hand), each training its share into the shared round store.

use crate::error::{Error, Result};

/// One share of a sweep's rounds: shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `--shard`: `K/N` (0-based), `auto` (a Slurm array task: shard
    /// `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`), or `auto/N`
    /// (a Kubernetes indexed Job: shard `JOB_COMPLETION_INDEX` of N). `env` reads a variable.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let bad = |why: &str| Error::Usage(format!("--shard {text}: {why}"));
        let number = |name: &str| -> Result<usize> {
            let v = env(name).ok_or_else(|| bad(&format!("{name} is not set")))?;
            v.trim()
                .parse()
                .map_err(|_| bad(&format!("{name}={v} is not a whole number")))
        };
        let shard = match text.split_once('/') {
            None if text == "auto" => {
                let min = match env("SLURM_ARRAY_TASK_MIN") {
                    Some(_) => number("SLURM_ARRAY_TASK_MIN")?,
                    None => 0,
                };
                let id = number("SLURM_ARRAY_TASK_ID")?;
                Shard {
                    index: id
                        .checked_sub(min)
                        .ok_or_else(|| bad("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN"))?,
                    count: number("SLURM_ARRAY_TASK_COUNT")?,
                }
            }
            Some(("auto", n)) => Shard {
                index: number("JOB_COMPLETION_INDEX")?,
                count: n.parse().map_err(|_| bad("expected auto/N"))?,
            },
            Some((k, n)) => Shard {
                index: k.parse().map_err(|_| bad("expected K/N, e.g. 0/4"))?,
                count: n.parse().map_err(|_| bad("expected K/N, e.g. 0/4"))?,
            },
            None => return Err(bad("expected K/N (e.g. 0/4), auto or auto/N")),
        };
        if shard.count == 0 || shard.index >= shard.count {
            return Err(bad(&format!(
                "shard {} of {} does not exist (shards are 0 to N-1)",
                shard.index, shard.count
            )));
        }
        Ok(shard)
    }
}

impl Shard {
    /// Which of the rounds whose expected costs are `costs` belong to this shard: all
    /// rounds, longest first (ties in order), dealt out round-robin, so every shard gets a
    /// similar share of the work whatever the store holds.
    pub fn deal(&self, costs: &[usize]) -> Vec<bool> {
        let mut by_cost: Vec<usize> = (0..costs.len()).collect();
        by_cost.sort_by_key(|&i| (std::cmp::Reverse(costs[i]), i));
        let mut mine = vec![false; costs.len()];
        for (p, &i) in by_cost.iter().enumerate() {
            mine[i] = p % self.count == self.index;
        }
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_take_turns_longest_first() {
        let costs = [5, 9, 1, 9, 3];
        let deal = |index| Shard { index, count: 2 }.deal(&costs);
        // By cost: rounds 1 and 3 (9), 0 (5), 4 (3), 2 (1), dealt in turn.
        assert_eq!(deal(0), [true, true, true, false, false]);
        assert_eq!(deal(1), [false, false, false, true, true]);
    }

    #[test]
    fn shards_parse_from_the_flag_slurm_and_kubernetes() {
        let none = env(&[]);
        assert_eq!(
            Shard::parse("1/3", &none).unwrap(),
            Shard { index: 1, count: 3 }
        );
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(
            Shard::parse("auto", &slurm).unwrap(),
            Shard { index: 1, count: 3 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            Shard::parse("auto/4", &k8s).unwrap(),
            Shard { index: 2, count: 4 }
        );
        for (text, says) in [
            ("3/3", "shard 3 of 3 does not exist"),
            ("0/0", "shard 0 of 0 does not exist"),
            ("x/2", "expected K/N"),
            ("2", "expected K/N (e.g. 0/4), auto or auto/N"),
            ("auto", "SLURM_ARRAY_TASK_ID is not set"),
        ] {
            let e = Shard::parse(text, &none).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
