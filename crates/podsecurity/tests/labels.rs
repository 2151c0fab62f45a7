//! Namespace labels to policy, after upstream's `TestPolicyToEvaluate` and `TestParseVersion`.

use keelson_podsecurity::{
    Level, LevelVersion, Policy, Version, evaluate_labels, policy_from_labels,
};
use serde_json::{Map, Value, json};

fn labels(kvs: &[(&str, &str)]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("other-label".into(), json!("foo-bar"));
    for (k, v) in kvs {
        m.insert(format!("pod-security.kubernetes.io/{k}"), json!(v));
    }
    m
}

fn lv(level: Level, version: Version) -> LevelVersion {
    LevelVersion::new(level, version)
}

const P: LevelVersion = LevelVersion { level: Level::Privileged, version: Version::Latest };

fn policy(enforce: LevelVersion, audit: LevelVersion, warn: LevelVersion) -> Policy {
    Policy { enforce, audit, warn }
}

/// A description, the labels (without their prefix), and the policy they resolve to.
type Case = (&'static str, &'static [(&'static str, &'static str)], Policy);

#[test]
fn labels_resolve_like_upstream() {
    use Level::*;
    use Version::*;
    let cases: &[Case] = &[
        (
            "simple enforce",
            &[("enforce", "baseline")],
            policy(lv(Baseline, Latest), P, lv(Baseline, Latest)),
        ),
        ("simple warn", &[("warn", "restricted")], policy(P, P, lv(Restricted, Latest))),
        ("simple audit", &[("audit", "baseline")], policy(P, lv(Baseline, Latest), P)),
        (
            "enforce & warn",
            &[("enforce", "baseline"), ("warn", "restricted")],
            policy(lv(Baseline, Latest), P, lv(Restricted, Latest)),
        ),
        (
            "enforce version",
            &[("enforce", "baseline"), ("enforce-version", "v1.22")],
            policy(lv(Baseline, V1(22)), P, lv(Baseline, V1(22))),
        ),
        (
            "enforce version & warn-version",
            &[("enforce", "baseline"), ("enforce-version", "v1.22"), ("warn-version", "latest")],
            policy(lv(Baseline, V1(22)), P, lv(Baseline, Latest)),
        ),
        (
            "enforce & warn-version",
            &[("enforce", "baseline"), ("warn-version", "v1.23")],
            policy(lv(Baseline, Latest), P, lv(Baseline, V1(23))),
        ),
        (
            "fully specified",
            &[
                ("enforce", "baseline"),
                ("enforce-version", "v1.20"),
                ("warn", "restricted"),
                ("warn-version", "v1.21"),
                ("audit", "restricted"),
                ("audit-version", "v1.22"),
            ],
            policy(lv(Baseline, V1(20)), lv(Restricted, V1(22)), lv(Restricted, V1(21))),
        ),
        (
            "enforce no warn",
            &[("enforce", "baseline"), ("warn", "privileged")],
            policy(lv(Baseline, Latest), P, P),
        ),
        ("no labels", &[], Policy::privileged()),
    ];
    for (desc, kvs, want) in cases {
        assert_eq!(policy_from_labels(&labels(kvs), &Policy::privileged()), Ok(*want), "{desc}");
    }
}

#[test]
fn unset_modes_take_the_defaults() {
    let defaults = Policy {
        enforce: lv(Level::Baseline, Version::V1(34)),
        audit: lv(Level::Restricted, Version::V1(34)),
        warn: lv(Level::Restricted, Version::V1(34)),
    };
    let got = policy_from_labels(&labels(&[("audit-version", "v1.30")]), &defaults).unwrap();
    assert_eq!(got.enforce, defaults.enforce);
    assert_eq!(got.audit, lv(Level::Restricted, Version::V1(30)));
    assert_eq!(got.warn, defaults.warn);
}

#[test]
fn invalid_labels_are_errors_worded_like_upstream() {
    let errs = policy_from_labels(
        &labels(&[("enforce", "foo"), ("warn-version", "v2.0"), ("audit", "Baseline")]),
        &Policy::privileged(),
    )
    .unwrap_err();
    assert_eq!(
        errs,
        [
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "Baseline": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2.0": must be "latest" or "v1.x""#,
        ]
    );
}

#[test]
fn invalid_labels_fall_back_like_upstream() {
    // enforce error: restricted; warn is not raised to it.
    let (p, errs) = evaluate_labels(&labels(&[("enforce", "foo")]), &Policy::privileged());
    assert_eq!(errs.len(), 1);
    assert_eq!(p, policy(lv(Level::Restricted, Version::Latest), P, P));
    // warn error: privileged (fail open).
    let (p, errs) = evaluate_labels(
        &labels(&[("enforce", "baseline"), ("warn", "foo")]),
        &Policy::privileged(),
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(p, policy(lv(Level::Baseline, Version::Latest), P, P));
    // version error: latest.
    let (p, _) = evaluate_labels(
        &labels(&[("enforce", "baseline"), ("enforce-version", "1.1")]),
        &Policy::privileged(),
    );
    assert_eq!(p.enforce, lv(Level::Baseline, Version::Latest));
}

#[test]
fn versions_parse_like_upstream() {
    for (s, want) in [
        ("latest", Version::Latest),
        ("v1.0", Version::V1(0)),
        ("v1.1", Version::V1(1)),
        ("v1.20", Version::V1(20)),
        ("v1.10000", Version::V1(10000)),
    ] {
        let got = policy_from_labels(&labels(&[("audit-version", s)]), &Policy::privileged());
        assert_eq!(got.map(|p| p.audit.version), Ok(want), "{s}");
    }
    for s in ["foo", "", "v2.0", "v1", "1.1", "v1.01", "v1.x", "v1.-1", " v1.2", "Latest"] {
        let got = policy_from_labels(&labels(&[("audit-version", s)]), &Policy::privileged());
        assert!(got.is_err(), "{s:?} should be invalid");
    }
}

#[test]
fn non_string_label_values_are_invalid() {
    let mut m = Map::new();
    m.insert("pod-security.kubernetes.io/enforce".into(), json!(1));
    let errs = policy_from_labels(&m, &Policy::privileged()).unwrap_err();
    assert_eq!(
        errs,
        [
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "1": must be one of privileged, baseline, restricted"#
        ]
    );
}
