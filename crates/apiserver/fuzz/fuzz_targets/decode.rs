//! Request bodies of a few kinds (first byte picks) through typed decoding and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((kind, body)) = data.split_first() {
        keelson_apiserver::fuzzing::decode(*kind, body);
    }
});
