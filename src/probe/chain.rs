//! The credential chain probe driver: [`ChainProbe::probe`] under the
//! probe's budget ([`ChainProbe::budget`]).

use std::sync::Arc;

use tokio::time::Instant;

use super::{ErrorKind, Outcome, ProbeError};
use crate::chain::{ChainProbe, ChainRound};
use crate::host::Host;

/// Evaluates every target's chain. `None` when the previous evaluation is
/// still stuck in a target's files: nothing new, the slot keeps the last
/// result. An evaluation past the budget is a failure that keeps the last
/// targets (their series stay rather than vanish). The probe succeeds when
/// every target was read completely; otherwise the error is the first
/// target's.
pub async fn run(
    probe: Arc<ChainProbe>,
    host: Arc<dyn Host>,
    has_role: Option<bool>,
    prev: Option<Arc<Outcome<ChainRound>>>,
) -> Option<Outcome<ChainRound>> {
    let started = Instant::now();
    let budget = probe.budget();
    match tokio::time::timeout(budget, probe.clone().probe(host, has_role)).await {
        Ok(Some(round)) => {
            let error = round
                .targets
                .iter()
                .find(|t| t.error.is_some())
                .map(|t| ProbeError::new(t.error_kind.unwrap_or(ErrorKind::Io), t.error.clone().unwrap_or_default()));
            Some(Outcome { value: round, duration: started.elapsed(), error })
        }
        Ok(None) => None,
        Err(_) => {
            tracing::warn!(?budget, "credential chain probe did not finish within its budget; keeping the last result");
            let value = prev.map(|p| p.value.clone()).unwrap_or_else(|| probe.empty_round());
            let error = ProbeError::new(
                ErrorKind::Budget,
                format!(
                    "credential chain evaluation did not finish within {budget:?}: a target's files or its container credentials endpoint do not answer"
                ),
            );
            Some(Outcome { value, duration: started.elapsed(), error: Some(error) })
        }
    }
}
