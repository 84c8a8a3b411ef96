//! One round's record: what identifies it ([`RoundKey`]), what it measured ([`RoundResult`]),
//! and its two written forms, a `results.csv` row and a store line. Everything read back is
//! range-checked, so a hand-edited or damaged file cannot put an impossible number into a
//! report or a comparison.

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// The loss, a parameter or an output became NaN or infinite during this epoch (1-based).
    Diverged {
        epoch: usize,
    },
}

/// What one round measured. Errors are fractions in `[0, 1]`; `None` for a diverged round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundResult {
    /// Mean training loss over the last epoch (the offending value for a diverged round).
    pub final_train_loss: f64,
    pub train_error: Option<f64>,
    pub test_error: Option<f64>,
    /// Digit classification error on the test pairs' digits, for networks whose digit outputs
    /// are trained as digit classes (an auxiliary loss).
    pub digit_test_error: Option<f64>,
    pub status: Status,
    /// A hash of the trained parameters' bits (see `train::weights_hash`): equal only when
    /// every weight is equal, so it shows any change of the numbers a round computes, however
    /// small. `None` for a diverged round, and in results files written before it existed.
    pub weights: Option<String>,
    /// One point per finished epoch, for the learning curves.
    pub curve: Vec<EpochPoint>,
    /// Error on the held-out validation pairs (with early stopping: of the best epoch's
    /// weights, the ones measured), when the spec holds some out.
    pub validation_error: Option<f64>,
    /// Where the test errors are (kept in the store, not in `results.csv`); `None` for a
    /// diverged round and in records stored before it existed.
    pub breakdown: Option<crate::breakdown::Breakdown>,
}

/// What one epoch measured: its mean training loss, its error on the training pairs as it
/// trained (training mode, the network changing batch by batch), and its test error at its
/// end (evaluation mode; for plotting only, nothing is chosen on it; `None` in an epoch the
/// spec's `curve_every` skips).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    pub train_loss: f64,
    pub train_error: f64,
    pub test_error: Option<f64>,
    /// When the spec holds validation pairs out.
    pub validation_error: Option<f64>,
}

/// A curve as one store field: `loss:train_error:test_error:validation_error` per epoch
/// (an error left empty where it was not measured, the validation error left out without
/// validation pairs), `;` between epochs, every number exact.
fn curve_text(curve: &[EpochPoint]) -> String {
    let points: Vec<String> = curve
        .iter()
        .map(|p| {
            let test = p.test_error.map_or_else(String::new, exact);
            let mut s = format!("{}:{}:{test}", exact(p.train_loss), exact(p.train_error));
            if let Some(v) = p.validation_error {
                s.push(':');
                s.push_str(&exact(v));
            }
            s
        })
        .collect();
    points.join(";")
}

/// `v` in the fewest digits that read back as the same bits: a report rebuilt from the
/// store writes what the run that stored it wrote, whatever rounding the report applies.
fn exact(v: f64) -> String {
    format!("{v:?}")
}

fn parse_curve(s: &str) -> Option<Vec<EpochPoint>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    // An error rate, or nothing where it was not measured; `None` when malformed.
    let rate = |x: &str| match x {
        "" => Some(None),
        _ => x
            .parse::<f64>()
            .ok()
            .filter(|x| (0.0..=1.0).contains(x))
            .map(Some),
    };
    s.split(';')
        .map(|p| {
            let mut v = p.split(':');
            let loss = v.next()?.parse::<f64>().ok().filter(|l| l.is_finite())?;
            let train = rate(v.next()?)??;
            let test = rate(v.next()?)?;
            let validation = v.next().map_or(Some(None), rate)?;
            v.next().is_none().then_some(EpochPoint {
                train_loss: loss,
                train_error: train,
                test_error: test,
                validation_error: validation,
            })
        })
        .collect()
}

/// What identifies a round's result: the same key always gives the same numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoundKey {
    pub spec_hash: String,
    pub data_seed: u64,
    pub init_seed: u64,
    pub data_hash: String,
    pub pairs: usize,
    pub epochs: usize,
    pub version: String,
}

/// One round as reported and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    pub variant: String,
    pub round: usize,
    pub data_seed: u64,
    pub init_seed: u64,
    pub spec_hash: String,
    pub data_hash: String,
    pub params: usize,
    pub epochs: usize,
    pub pairs: usize,
    pub version: String,
    pub result: RoundResult,
    /// Wall-clock seconds the round took to train: kept in the store and `timing.csv`, never
    /// in `results.csv` (it is not reproducible).
    pub seconds: f64,
}

/// The columns of `results.csv`, in order. Files written before `weights` and
/// `validation_error` existed lack them, and are read all the same.
pub const RESULTS_HEADER: [&str; 16] = [
    "variant",
    "round",
    "data_seed",
    "init_seed",
    "spec_hash",
    "params",
    "epochs",
    "pairs",
    "final_train_loss",
    "train_error",
    "test_error",
    "digit_test_error",
    "status",
    "data_hash",
    "weights",
    "validation_error",
];

fn status_text(s: Status) -> String {
    match s {
        Status::Ok => "ok".into(),
        Status::Diverged { epoch } => format!("diverged@{epoch}"),
    }
}

fn parse_status(s: &str) -> Result<Status, String> {
    let bad = || format!("status `{s}` is neither `ok` nor `diverged@EPOCH`");
    match s {
        "ok" => Ok(Status::Ok),
        _ => match s.strip_prefix("diverged@").map(str::parse) {
            Some(Ok(epoch)) if epoch >= 1 => Ok(Status::Diverged { epoch }),
            _ => Err(bad()),
        },
    }
}

/// A count of at least `min`.
fn count(name: &str, s: &str, min: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(format!("{name} `{s}` is not a whole number >= {min}")),
    }
}

fn seed(name: &str, s: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("{name} `{s}` is not a 64-bit seed"))
}

/// A short hash as the runner writes it: 16 lowercase hex digits.
fn hash(name: &str, s: &str) -> Result<String, String> {
    if s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_string())
    } else {
        Err(format!("{name} `{s}` is not 16 hex digits"))
    }
}

/// An error rate: empty, or a fraction in `[0, 1]`.
fn rate(name: &str, s: &str) -> Result<Option<f64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(Some(v)),
        _ => Err(format!("{name} `{s}` is not an error rate in [0, 1]")),
    }
}

/// A variant name the reports can hold: non-empty, no quote, `|` or control character, and
/// not starting with `=`, `+`, `-` or `@` (a spreadsheet opening `results.csv` would take
/// it for a formula). Commas are fine: grid points have them, and every file quotes fields
/// as CSV does.
pub fn check_variant_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['"', '|']) || name.chars().any(char::is_control) {
        Err(format!(
            "variant name `{}` is empty or holds a quote, `|` or control character",
            name.escape_debug()
        ))
    } else if name.starts_with(['=', '+', '-', '@']) {
        Err(format!(
            "variant name `{}` starts with `{}`, which spreadsheets take for a formula; \
             rename the spec file",
            name.escape_debug(),
            &name[..1]
        ))
    } else {
        Ok(())
    }
}

/// `fields` as one CSV line (quoted where needed), without its line end.
pub fn csv_line(fields: &[String]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = w.write_record(fields);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

impl RoundRecord {
    /// The record of round `round` of `variant`, identified by `key`.
    pub fn new(
        variant: &str,
        round: usize,
        params: usize,
        key: RoundKey,
        result: RoundResult,
        seconds: f64,
    ) -> Self {
        RoundRecord {
            variant: variant.to_string(),
            round,
            data_seed: key.data_seed,
            init_seed: key.init_seed,
            spec_hash: key.spec_hash,
            data_hash: key.data_hash,
            params,
            epochs: key.epochs,
            pairs: key.pairs,
            version: key.version,
            result,
            seconds,
        }
    }

    /// The store key of this round.
    pub fn key(&self) -> RoundKey {
        RoundKey {
            spec_hash: self.spec_hash.clone(),
            data_seed: self.data_seed,
            init_seed: self.init_seed,
            data_hash: self.data_hash.clone(),
            pairs: self.pairs,
            epochs: self.epochs,
            version: self.version.clone(),
        }
    }

    /// The `results.csv` fields.
    pub fn fields(&self) -> Vec<String> {
        self.fields_with(|v| format!("{v:.6}"), |v| format!("{v:.4}"))
    }

    /// The fields of `results.csv`'s columns, `loss` and `rate` writing the numbers.
    fn fields_with(&self, loss: fn(f64) -> String, rate: fn(f64) -> String) -> Vec<String> {
        let r = &self.result;
        let opt = |v: Option<f64>| v.map_or_else(String::new, rate);
        vec![
            self.variant.clone(),
            self.round.to_string(),
            self.data_seed.to_string(),
            self.init_seed.to_string(),
            self.spec_hash.clone(),
            self.params.to_string(),
            self.epochs.to_string(),
            self.pairs.to_string(),
            loss(r.final_train_loss),
            opt(r.train_error),
            opt(r.test_error),
            opt(r.digit_test_error),
            status_text(r.status),
            self.data_hash.clone(),
            r.weights.clone().unwrap_or_default(),
            opt(r.validation_error),
        ]
    }

    /// Parses and range-checks the fields of a `results.csv` row (see [`RESULTS_HEADER`];
    /// without `weights` too); the error says which field is wrong and why.
    pub fn from_fields(f: &[&str], version: &str) -> Result<Self, String> {
        let n = RESULTS_HEADER.len();
        if f.len() > n || f.len() < n - 2 {
            return Err(format!("{} fields, expected {n}", f.len()));
        }
        let weights = match f.get(14) {
            None | Some(&"") => None,
            Some(w) => Some(hash("weights", w)?),
        };
        check_variant_name(f[0])?;
        let status = parse_status(f[12])?;
        let loss: f64 = f[8]
            .parse()
            .map_err(|_| format!("final_train_loss `{}` is not a number", f[8]))?;
        let result = RoundResult {
            final_train_loss: loss,
            train_error: rate("train_error", f[9])?,
            test_error: rate("test_error", f[10])?,
            digit_test_error: rate("digit_test_error", f[11])?,
            status,
            weights,
            curve: Vec::new(),
            validation_error: match f.get(15) {
                Some(v) => rate("validation_error", v)?,
                None => None,
            },
            breakdown: None,
        };
        let epochs = count("epochs", f[6], 1)?;
        match status {
            Status::Ok => {
                if !(loss.is_finite() && loss >= 0.0) {
                    return Err(format!(
                        "final_train_loss `{}` of a round that is ok is not finite and >= 0",
                        f[8]
                    ));
                }
                if result.test_error.is_none() || result.train_error.is_none() {
                    return Err("a round that is ok has no train or test error".into());
                }
            }
            Status::Diverged { epoch } => {
                if epoch > epochs {
                    return Err(format!("diverged@{epoch} is past its {epochs} epochs"));
                }
                if result.test_error.is_some() {
                    return Err("a diverged round has a test error".into());
                }
            }
        }
        Ok(RoundRecord {
            variant: f[0].to_string(),
            round: count("round", f[1], 0)?,
            data_seed: seed("data_seed", f[2])?,
            init_seed: seed("init_seed", f[3])?,
            spec_hash: hash("spec_hash", f[4])?,
            params: count("params", f[5], 1)?,
            epochs,
            pairs: count("pairs", f[7], 1)?,
            result,
            data_hash: hash("data_hash", f[13])?,
            version: version.to_string(),
            seconds: 0.0,
        })
    }

    /// One store line: the crate version, the seconds, the results fields with exact
    /// numbers, then the curve and where the test errors are, as CSV.
    pub fn to_store_line(&self) -> String {
        let mut f = vec![self.version.clone(), format!("{:.3}", self.seconds)];
        f.extend(self.fields_with(exact, exact));
        f.push(curve_text(&self.result.curve));
        let breakdown = self.result.breakdown.as_ref();
        f.push(breakdown.map(|b| b.to_text()).unwrap_or_default());
        csv_line(&f)
    }

    /// Parses a store line; `None` for anything malformed or out of range.
    pub fn from_store_line(line: &str) -> Option<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let row = rdr.records().next()?.ok()?;
        let f: Vec<&str> = row.iter().collect();
        let [version, seconds, rest @ ..] = f.as_slice() else {
            return None;
        };
        // After the results fields: the curve, then where the test errors are (lines stored
        // before either existed lack them).
        let n = RESULTS_HEADER.len();
        let (rest, extra) = match rest.len() {
            m if m > n => rest.split_at(n.min(m)),
            _ => (rest, &[][..]),
        };
        let curve = extra.first().map_or(Some(Vec::new()), |c| parse_curve(c))?;
        let breakdown = match extra.get(1) {
            None | Some(&"") => None,
            Some(b) => Some(crate::breakdown::Breakdown::from_text(b)?),
        };
        if extra.len() > 2 {
            return None;
        }
        let mut r = Self::from_fields(rest, version).ok()?;
        r.result.curve = curve;
        r.result.breakdown = breakdown;
        r.seconds = seconds
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
        (!version.is_empty()).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored round reads back as the very numbers the run had, not as `results.csv`'s
    /// rounded ones: reports rebuilt from the store are the run's bytes.
    #[test]
    fn store_lines_keep_exact_numbers() {
        let key = RoundKey {
            spec_hash: "0123456789abcdef".into(),
            data_seed: 1,
            init_seed: 2,
            data_hash: "fedcba9876543210".into(),
            pairs: 300,
            epochs: 1,
            version: "0.0.0".into(),
        };
        let result = RoundResult {
            final_train_loss: 2.0 / 3.0,
            train_error: Some(1.0 / 300.0),
            test_error: Some(197.0 / 300.0),
            digit_test_error: Some(395.0 / 600.0),
            status: Status::Ok,
            weights: Some("00000000000000ff".into()),
            curve: vec![EpochPoint {
                train_loss: 0.1,
                train_error: 1.0 / 7.0,
                test_error: Some(197.0 / 300.0),
                validation_error: None,
            }],
            validation_error: Some(1.0 / 60.0),
            breakdown: Some(crate::breakdown::Breakdown {
                classes: 2,
                samples: vec![100, 50, 100, 50],
                wrong: vec![40, 7, 100, 50],
                confusion: Some(vec![380, 20, 15, 185]),
                worst: vec![(17, 0.999), (3, 2.0 / 3.0)],
            }),
        };
        let r = RoundRecord::new("v", 0, 10, key, result, 1.5);
        assert_eq!(
            RoundRecord::from_store_line(&r.to_store_line()),
            Some(r.clone())
        );
        // An inconsistent breakdown (more wrong than samples) is damage: the line is refused.
        let line = r.to_store_line().replace(";40 7 100 50;", ";40 7 101 50;");
        assert_eq!(RoundRecord::from_store_line(&line), None);
    }

    #[test]
    fn curves_round_trip_with_unmeasured_errors() {
        let p = |test, validation| EpochPoint {
            train_loss: 0.5,
            train_error: 0.25,
            test_error: test,
            validation_error: validation,
        };
        let curve = vec![
            p(None, None),
            p(Some(0.125), Some(0.25)),
            p(None, Some(0.5)),
        ];
        let text = curve_text(&curve);
        assert_eq!(text, "0.5:0.25:;0.5:0.25:0.125:0.25;0.5:0.25::0.5");
        assert_eq!(parse_curve(&text), Some(curve));
        // Exact: a third is a third, not 0.3333.
        let third = vec![EpochPoint {
            train_loss: 1.0 / 3.0,
            ..p(Some(2.0 / 3.0), None)
        }];
        assert_eq!(parse_curve(&curve_text(&third)), Some(third));
        // Older stores: three fields, rounded.
        assert_eq!(
            parse_curve("0.5:0.25:0.125"),
            Some(vec![p(Some(0.125), None)])
        );
        for bad in [
            "0.5:0.25",
            "0.5::0.1",
            "0.5:0.25:2",
            "nan:0.2:0.1",
            "0.5:0.2:0.1:0.1:0",
        ] {
            assert_eq!(parse_curve(bad), None, "{bad}");
        }
    }
}
