//! A request's path and query: routing, query parameters, `continue` tokens.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(uri) = std::str::from_utf8(data) {
        keelson_apiserver::fuzzing::request_uri(uri);
    }
});
