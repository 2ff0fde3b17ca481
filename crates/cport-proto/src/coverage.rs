//! A test aid: property tests that also prove they reach the code under test.

use proptest::prelude::*;

/// Runs `test` on `cases` values drawn from `strategy` and counts the label
/// each case returns; fails unless every label in `must_reach` was seen at
/// least that many times. A generator that stops reaching the code under
/// test (every case refused early, no case of a kind) fails here instead of
/// passing with its assertions never run.
pub(crate) fn run_with_coverage<S: Strategy>(
    strategy: S,
    cases: u32,
    must_reach: &[(&str, u32)],
    test: impl Fn(S::Value) -> Result<&'static str, TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let seen = std::cell::RefCell::new(std::collections::HashMap::<&'static str, u32>::new());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    let result = runner.run(&strategy, |v| {
        let label = test(v)?;
        *seen.borrow_mut().entry(label).or_default() += 1;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner();
    for (label, min) in must_reach {
        let got = seen.get(label).copied().unwrap_or(0);
        assert!(
            got >= *min,
            "only {got} of {cases} cases reached {label:?} (want {min}): {seen:?}"
        );
    }
}
