//! JSON, merge and strategic merge patches (first byte picks) against a Deployment.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((kind, body)) = data.split_first() {
        keelson_apiserver::fuzzing::patch(*kind, body);
    }
});
