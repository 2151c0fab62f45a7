//! CEL expressions as admission policies and CRD validation rules use them.
//!
//! `keelson_apiserver::cel` catches panics inside the third-party `cel` and `kube-cel`
//! crates and turns them into errors; libFuzzer's panic hook would abort on those before
//! they are caught, so the hook lets panics the CEL boundary catches pass. Any other
//! panic still aborts.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !keelson_apiserver::fuzzing::cel_catches_panics() {
                aborting(info);
            }
        }));
    },
    |data: &[u8]| {
        if let Ok(expression) = std::str::from_utf8(data) {
            keelson_apiserver::fuzzing::cel(expression);
        }
    }
);
