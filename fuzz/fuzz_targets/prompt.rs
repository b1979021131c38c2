//! The prompt parser and the parameter checks on any text: no panic, and a prompt the checks
//! accept parses to finite, bounded emphasis.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pentimento_engine::params::{GenerationParams, MAX_EMPHASIS};
use pentimento_engine::prompt::{parse, Fragment};

fuzz_target!(|text: &str| {
    let fragments = parse(text);
    let params = GenerationParams {
        prompt: text.to_string(),
        ..Default::default()
    };
    if params.validate().is_ok() {
        for f in fragments {
            if let Fragment::Text { weight, .. } = f {
                assert!(weight.is_finite() && weight.abs() <= MAX_EMPHASIS);
            }
        }
    }
});
