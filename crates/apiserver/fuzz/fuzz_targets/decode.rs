//! Request bodies of a few kinds as JSON, YAML or protobuf (the first byte picks both)
//! through content-type decoding, typed decoding and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((kind, body)) = data.split_first() {
        keelson_apiserver::fuzzing::decode(*kind, body);
    }
});
