//! Upstream's health endpoints (`k8s.io/apiserver/pkg/server/healthz`): `/healthz`,
//! `/livez` and `/readyz` run named checks and answer `ok`, or with `?verbose` one line a
//! check (`[+]leaderElection ok`) and `<endpoint> check passed`; a failing check makes
//! the answer 500 and always verbose, its reason withheld (it is logged instead).
//! `?exclude=<name>` skips a check; `/<endpoint>/<name>` runs one.
//!
//! Pure: the caller runs the checks and writes the answer.

use http::StatusCode;

/// A check's name and what it found: `Err` holds the reason, which is logged, never
/// answered.
pub type Checked<'a> = (&'a str, Result<(), String>);

/// How the request asked.
#[derive(Clone, Debug, Default)]
pub struct Options<'a> {
    /// `?verbose`: list every check even when all pass.
    pub verbose: bool,
    /// `?exclude=<name>` (repeatable): checks to skip.
    pub exclude: Vec<&'a str>,
}

impl<'a> Options<'a> {
    /// Reads `verbose` and every `exclude` from a raw query string.
    pub fn from_query(query: Option<&'a str>) -> Self {
        let mut options = Options::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "verbose" => options.verbose = true,
                "exclude" if !value.is_empty() => options.exclude.push(value),
                _ => {}
            }
        }
        options
    }
}

/// The answer of `/<endpoint>` (`rest` empty) or `/<endpoint>/<check>`: status and
/// `text/plain` body.
pub fn answer(
    endpoint: &str,
    rest: &[&str],
    options: &Options<'_>,
    checks: &[Checked<'_>],
) -> (StatusCode, String) {
    if let [name] = rest {
        return match checks.iter().find(|(n, _)| n == name) {
            Some((_, Ok(()))) => (StatusCode::OK, "ok".into()),
            Some((n, Err(reason))) => {
                tracing::info!(check = %n, %reason, "{endpoint} check failed");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("[-]{n} failed: reason withheld\n"))
            }
            None => (StatusCode::NOT_FOUND, "404 page not found\n".into()),
        };
    }
    if !rest.is_empty() {
        return (StatusCode::NOT_FOUND, "404 page not found\n".into());
    }
    let mut body = String::new();
    let mut failed = Vec::new();
    for (name, result) in checks {
        if options.exclude.contains(name) {
            body.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match result {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => {
                body.push_str(&format!("[-]{name} failed: reason withheld\n"));
                failed.push(format!("{name}: {reason}"));
            }
        }
    }
    let unknown: Vec<String> = options
        .exclude
        .iter()
        .filter(|e| !checks.iter().any(|(n, _)| n == *e))
        .map(|e| format!("{e:?}"))
        .collect();
    if !unknown.is_empty() {
        body.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            unknown.join(",")
        ));
    }
    if !failed.is_empty() {
        tracing::info!(failed = %failed.join("; "), "{endpoint} check failed");
        body.push_str(&format!("{endpoint} check failed\n"));
        return (StatusCode::INTERNAL_SERVER_ERROR, body);
    }
    if !options.verbose {
        return (StatusCode::OK, "ok".into());
    }
    body.push_str(&format!("{endpoint} check passed\n"));
    (StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_upstreams_healthz() {
        let checks = [("ping", Ok(())), ("leaderElection", Ok(()))];
        let plain = Options::from_query(None);
        assert_eq!(answer("healthz", &[], &plain, &checks), (StatusCode::OK, "ok".into()));
        let verbose = Options::from_query(Some("verbose"));
        assert_eq!(
            answer("readyz", &[], &verbose, &checks).1,
            "[+]ping ok\n[+]leaderElection ok\nreadyz check passed\n"
        );
        let failing = [("ping", Ok(())), ("leaderElection", Err("lost".into()))];
        let (code, body) = answer("livez", &[], &plain, &failing);
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            "[+]ping ok\n[-]leaderElection failed: reason withheld\nlivez check failed\n"
        );
        let excluded = Options::from_query(Some("verbose&exclude=leaderElection&exclude=nope"));
        assert_eq!(
            answer("livez", &[], &excluded, &failing),
            (
                StatusCode::OK,
                "[+]ping ok\n[+]leaderElection excluded: ok\nwarn: some health checks cannot be \
                 excluded: no matches for \"nope\"\nlivez check passed\n"
                    .into()
            )
        );
        assert_eq!(answer("livez", &["ping"], &plain, &failing), (StatusCode::OK, "ok".into()));
        assert_eq!(
            answer("livez", &["leaderElection"], &plain, &failing).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(answer("livez", &["other"], &plain, &failing).0, StatusCode::NOT_FOUND);
    }
}
