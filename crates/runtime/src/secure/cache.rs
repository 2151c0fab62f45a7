//! The review caches of the secure port: an answer is kept for a while (upstream's 10 s)
//! so a scraper asking every few seconds costs the API server one review per interval,
//! and the cache is bounded so that many distinct callers cannot grow it without end.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Upstream's webhook cache size.
const MAX_ENTRIES: usize = 8192;

pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub(crate) fn new() -> Self {
        TtlCache { entries: Mutex::new(HashMap::new()) }
    }

    /// The answer kept for `key`, unless it expired.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(_, until)| Instant::now() < *until).map(|(v, _)| v.clone())
    }

    /// Keeps `value` for `ttl`; when full, expired answers go first, then the oldest.
    pub(crate) fn put(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, until)| now < *until);
        }
        if entries.len() >= MAX_ENTRIES {
            // The answers that expire first.
            let first = entries.values().map(|(_, until)| *until).min();
            entries.retain(|_, (_, until)| Some(*until) != first);
        }
        entries.insert(key, (value, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answers_expire_and_the_cache_stays_bounded() {
        let cache = TtlCache::new();
        cache.put("a", 1, Duration::from_secs(10));
        assert_eq!(cache.get(&"a"), Some(1));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.get(&"a"), None);
        let cache = TtlCache::new();
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(i, i, Duration::from_secs(10 + i as u64));
        }
        let len = cache.entries.lock().map(|e| e.len()).unwrap_or_default();
        assert!(len <= MAX_ENTRIES, "{len}");
        assert_eq!(cache.get(&(MAX_ENTRIES + 9)), Some(MAX_ENTRIES + 9));
    }
}
