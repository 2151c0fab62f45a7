//! `labelSelector` and `fieldSelector`, split at the first newline.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (label, field) = text.split_once('\n').unwrap_or((text, text));
        keelson_apiserver::fuzzing::selectors(label, field);
    }
});
