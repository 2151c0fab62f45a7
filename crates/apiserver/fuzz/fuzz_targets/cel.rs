//! CEL expressions as admission policies and CRD validation rules use them.
//!
//! `keelson_apiserver::cel` catches panics inside the third-party `cel` and `kube-cel`
//! crates and turns them into errors; libFuzzer's panic hook would abort on those before
//! they are caught, so panics located in those crates skip it. One that is not caught
//! still unwinds out of the target and aborts.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or("");
            if !(file.contains("/kube-cel-") || file.contains("/cel-0.")) {
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
