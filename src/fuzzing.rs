//! Property-based fuzzing of the parsers that read untrusted input (the IMDS
//! credential document, profile files, NTP replies), shared by their `fuzz`
//! test modules.
//!
//! `cargo test` runs `PROPTEST_CASES` cases per property (proptest's default,
//! 256). `scripts/fuzz.sh` sets `FUZZ_SECONDS` to run batches of fresh random
//! cases until that much time has passed. A failing case's seed is saved in
//! `proptest-regressions/` (committed) and replayed first on every run; the
//! hand-kept inputs in `tests/corpus/` are replayed by plain tests, since
//! seeds stop meaning the same input when a strategy changes.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseResult, TestRunner};

/// Runs `test` on values of `strategy`; `source_file` (`file!()`) names the
/// regression file. Panics with the shrunk failing input.
pub fn fuzz<S>(source_file: &'static str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let persist = std::env::var_os("PROPTEST_DISABLE_FAILURE_PERSISTENCE").is_none();
    let config = Config {
        failure_persistence: persist.then(|| Box::new(FileFailurePersistence::SourceParallel("proptest-regressions")) as _),
        source_file: Some(source_file),
        ..Config::default()
    };
    let budget = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).map(Duration::from_secs_f64);
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        // A new runner draws a new random seed: every batch explores new inputs.
        let mut runner = TestRunner::new(config.clone());
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{e}\n(after about {cases} passing cases; the seed is saved under proptest-regressions/)");
        }
        cases += u64::from(config.cases);
        if budget.is_none_or(|b| started.elapsed() >= b) {
            break;
        }
    }
    if budget.is_some() {
        eprintln!("{source_file}: {cases} cases in {:.1?}", started.elapsed());
    }
}

/// The files of `tests/corpus/<name>/`, sorted, with their contents.
pub fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("corpus file"))).collect()
}
