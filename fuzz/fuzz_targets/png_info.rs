//! The PNG metadata reader (`info`, `--params-from`, drops on the prompt panel) on any bytes:
//! it must return, bounded, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pentimento_engine::png_info::parse_png(data);
});
