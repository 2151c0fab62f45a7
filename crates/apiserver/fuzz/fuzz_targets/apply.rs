//! Server-side apply: field sets and apply configurations (first byte picks the kind).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((kind, body)) = data.split_first() {
        keelson_apiserver::fuzzing::apply(*kind, body);
    }
});
