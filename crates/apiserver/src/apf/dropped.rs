//! The `Retry-After` a priority level's refusals carry: upstream's dropped-requests
//! tracker. It starts at one second, doubles (to at most 32) while a level keeps
//! refusing at least three requests per second of the current value, and comes back
//! down a second at a time once refusals fall below it.

use std::collections::HashMap;
use std::sync::Mutex;

const MAX_RETRY_AFTER: i64 = 32;

#[derive(Default)]
pub struct Dropped {
    levels: Mutex<HashMap<String, Level>>,
}

struct Level {
    /// Refusals per past second (unix time), newest last.
    history: Vec<(i64, i64)>,
    current_second: i64,
    current_count: i64,
    retry_after: i64,
    raised_at: i64,
}

impl Dropped {
    /// Counts a refusal by `level` at `now` (unix seconds).
    pub fn record(&self, level: &str, now: i64) {
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let stats = levels.entry(level.to_owned()).or_insert_with(|| Level {
            history: Vec::new(),
            current_second: 0,
            current_count: 0,
            retry_after: 1,
            raised_at: 0,
        });
        if stats.current_second == now {
            stats.current_count += 1;
            return;
        }
        let (second, count) = (stats.current_second, stats.current_count);
        stats.history.push((second, count));
        let keep = (2 * stats.retry_after).min(MAX_RETRY_AFTER);
        stats.history.retain(|(at, _)| second - at <= keep);
        stats.current_second = now;
        stats.current_count = 1;
        stats.adjust(now);
    }

    /// The seconds a client refused by `level` should wait.
    pub fn retry_after(&self, level: &str) -> i64 {
        let levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        levels.get(level).map_or(1, |stats| stats.retry_after)
    }
}

impl Level {
    fn adjust(&mut self, now: i64) {
        let retry_after = self.retry_after;
        let recent: i64 = self
            .history
            .iter()
            .rev()
            .take_while(|(at, _)| now - at <= retry_after)
            .filter(|(at, _)| *at < now)
            .map(|(_, count)| count)
            .sum();
        if now - self.raised_at >= retry_after && recent >= 3 * retry_after {
            self.retry_after = (retry_after * 2).min(MAX_RETRY_AFTER);
            self.raised_at = now;
        } else if recent < retry_after && retry_after > 1 {
            self.retry_after = retry_after - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_grows_under_sustained_refusals_and_shrinks_after() {
        let dropped = Dropped::default();
        assert_eq!(dropped.retry_after("l"), 1);
        let mut now = 1_000;
        for _ in 0..10 {
            for _ in 0..100 {
                dropped.record("l", now);
            }
            now += 1;
        }
        let raised = dropped.retry_after("l");
        assert!(raised > 1, "{raised}");
        assert!(raised <= MAX_RETRY_AFTER);
        assert_eq!(dropped.retry_after("other"), 1);
        // Quiet seconds, one refusal each: back down to one.
        for _ in 0..100 {
            now += 5;
            dropped.record("l", now);
        }
        assert_eq!(dropped.retry_after("l"), 1);
    }
}
