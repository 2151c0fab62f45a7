//! Waiting without sleeps for synchronisation: poll a condition until it holds or a
//! deadline passes, reporting what was last seen.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

/// How long [`eventually`] and [`wait_for`] wait.
pub const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it says yes, for up to [`DEADLINE`]; errors count as "not yet"
/// and the last one is reported.
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(POLL).await;
    }
    match last {
        Some(e) => Err(e.context(format!("timed out waiting for {what}"))),
        None => bail!("timed out waiting for {what}"),
    }
}

/// Reads what `read` returns until `done` holds for it, for up to [`DEADLINE`]; returns
/// it, or an error naming what was last read.
pub async fn wait_for<T, F, Fut>(what: &str, mut read: F, done: impl Fn(&T) -> bool) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
    T: Debug,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let last = match read().await {
            Ok(value) if done(&value) => return Ok(value),
            Ok(value) => format!("{value:?}"),
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!("timed out waiting for {what}; last seen: {last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}
