use super::*;

const SECRET_KEY: &str = "/registry/secrets/default/s";

fn config(providers: &str) -> EncryptionConfig {
    EncryptionConfig::parse(&format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
    ))
    .expect("parses")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_round_trip_and_other_resources_stay_plain() {
    let config = config(
        "      - secretbox:\n          keys:\n            - {name: k1, secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}\n      - identity: {}\n",
    );
    let secret = br#"{"data":{"password":"aHVudGVyMg=="}}"#.to_vec();
    let sealed = config.encrypt(SECRET_KEY, secret.clone()).expect("encrypts");
    assert!(sealed.starts_with(b"k8s:enc:secretbox:v1:k1:"));
    assert!(!contains(&sealed, b"password"));
    assert_eq!(config.decrypt(SECRET_KEY, sealed.clone()).expect("decrypts"), secret);
    // Plaintext written before encryption was turned on still reads.
    assert_eq!(
        config.decrypt("/registry/secrets/default/old", secret.clone()).expect("identity"),
        secret
    );
    assert_eq!(
        config.encrypt("/registry/configmaps/default/c", secret.clone()).expect("plain"),
        secret
    );
    let mut tampered = sealed;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(config.decrypt(SECRET_KEY, tampered), Err(Error::Corrupt(_))));
}

#[test]
fn aes_providers_write_upstream_prefixes() {
    for (provider, prefix) in
        [("aesgcm", "k8s:enc:aesgcm:v1:k1:"), ("aescbc", "k8s:enc:aescbc:v1:k1:")]
    {
        for secret in [generate_key(16), generate_key(24), generate_key(32)] {
            let config = config(&format!(
                "      - {provider}:\n          keys:\n            - {{name: k1, secret: {secret}}}\n"
            ));
            let sealed = config.encrypt(SECRET_KEY, b"{\"data\":{}}".to_vec()).expect("encrypts");
            assert!(sealed.starts_with(prefix.as_bytes()), "{provider}");
            assert_eq!(stored_with(&sealed), format!("{provider}/k1"));
            assert_eq!(config.decrypt(SECRET_KEY, sealed).expect("decrypts"), b"{\"data\":{}}");
            assert_eq!(config.write_key(SECRET_KEY), format!("{provider}/k1"));
        }
    }
}

#[test]
fn every_key_of_every_provider_reads_so_keys_rotate() {
    let (old, new, cbc) = (generate_key(32), generate_key(32), generate_key(16));
    let before =
        config(&format!("      - aescbc:\n          keys: [{{name: legacy, secret: {cbc}}}]\n"));
    let legacy = before.encrypt(SECRET_KEY, b"a".to_vec()).expect("encrypts");
    let before =
        config(&format!("      - secretbox:\n          keys: [{{name: key1, secret: {old}}}]\n"));
    let written_old = before.encrypt(SECRET_KEY, b"b".to_vec()).expect("encrypts");
    let after = config(&format!(
        "      - secretbox:\n          keys:\n            - {{name: key2, secret: {new}}}\n            - {{name: key1, secret: {old}}}\n      - aescbc:\n          keys: [{{name: legacy, secret: {cbc}}}]\n      - identity: {{}}\n"
    ));
    assert_eq!(after.decrypt(SECRET_KEY, legacy).expect("aescbc reads"), b"a");
    assert_eq!(after.decrypt(SECRET_KEY, written_old.clone()).expect("old key reads"), b"b");
    assert_eq!(after.decrypt(SECRET_KEY, b"{}".to_vec()).expect("identity reads"), b"{}");
    let rewritten = after.encrypt(SECRET_KEY, b"b".to_vec()).expect("encrypts");
    assert_eq!(stored_with(&rewritten), "secretbox/key2");
    assert_eq!(after.write_key(SECRET_KEY), "secretbox/key2");
    // Once the old key is dropped, what it wrote no longer reads, and says why.
    let dropped =
        config(&format!("      - secretbox:\n          keys: [{{name: key2, secret: {new}}}]\n"));
    let Err(Error::Corrupt(message)) = dropped.decrypt(SECRET_KEY, written_old) else {
        panic!("read with a dropped key");
    };
    assert!(message.contains("no matching key was found"), "{message}");
    // A key of the same name but other material fails authentication, not silently.
    let impostor =
        config(&format!("      - secretbox:\n          keys: [{{name: key2, secret: {old}}}]\n"));
    assert!(impostor.decrypt(SECRET_KEY, rewritten).is_err());
    assert_eq!(
        after.summary()[0]
            .providers
            .iter()
            .map(|p| (p.kind.as_str(), p.keys.len()))
            .collect::<Vec<_>>(),
        [("secretbox", 2), ("aescbc", 1), ("identity", 0)]
    );
}

#[test]
fn bad_keys_get_upstream_messages() {
    let cases = [
        (
            "      - aesgcm:\n          keys: [{name: k, secret: c2hvcnQ=}]\n",
            "resources[0].providers[0].aesgcm.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 5, expected one of [16 24 32]",
        ),
        (
            "      - aescbc:\n          keys: [{name: k, secret: 'not base64!'}]\n",
            "resources[0].providers[0].aescbc.keys[0].secret: Invalid value: \"REDACTED\": secrets must be base64 encoded",
        ),
        (
            "      - secretbox:\n          keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAA==}]\n",
            "resources[0].providers[0].secretbox.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 16, expected one of [32]",
        ),
        (
            "      - identity: {}\n      - aescbc:\n          keys: []\n",
            "resources[0].providers[1].aescbc.keys: Required value: at least one keys is required",
        ),
        (
            "      - aesgcm:\n          keys: [{secret: AAAAAAAAAAAAAAAAAAAAAA==}]\n",
            "resources[0].providers[0].aesgcm.keys[0].name: Required value: name is a mandatory field for a key",
        ),
        (
            "      - aesgcm:\n          keys: [{name: k}]\n",
            "resources[0].providers[0].aesgcm.keys[0].secret: Required value: secret is a mandatory field for a key",
        ),
    ];
    for (providers, message) in cases {
        let text = format!(
            "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
        );
        let error = EncryptionConfig::parse(&text).err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some(message), "{providers}");
    }
}

#[test]
fn several_errors_are_listed_together() {
    let message = |text: &str| EncryptionConfig::parse(text).err().map(|e| e.to_string());
    assert_eq!(
        message("kind: Other\n").as_deref(),
        Some(r#"kind must be EncryptionConfiguration, not "Other""#)
    );
    assert_eq!(
        message("kind: EncryptionConfiguration\nresources:\n  - resources: [nothings]\n    providers: []\n").as_deref(),
        Some(r#"[resources[0].resources[0]: Invalid value: "nothings": names no resource this server has, resources[0].providers: Required value: at least one resources[0].providers is required]"#)
    );
}

#[test]
fn bad_configurations_are_refused() {
    for bad in [
        "kind: Something\n",
        "kind: EncryptionConfiguration\nresources: []\n",
        "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: []\n",
        "kind: EncryptionConfiguration\nresources:\n  - resources: [nothings]\n    providers:\n      - identity: {}\n",
        "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - rot13: {}\n",
        "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - {identity: {}, aescbc: {keys: []}}\n",
    ] {
        assert!(EncryptionConfig::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn stored_values_name_their_key() {
    assert_eq!(stored_with(b"{\"kind\":\"Secret\"}"), "identity");
    assert_eq!(stored_with(b"k8s:enc:aesgcm:v1:key9:\x00\x01"), "aesgcm/key9");
    assert_eq!(stored_with(b"k8s:enc:broken"), "unknown");
}
