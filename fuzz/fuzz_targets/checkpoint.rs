//! The `.ckpt` reader (our zip and pickle readers) on any bytes: an error or a checkpoint
//! whose every tensor lies inside the file, never a panic, a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pentimento_engine::checkpoint::TorchCheckpoint;

fuzz_target!(|data: &[u8]| {
    let _ = pentimento_engine::checkpoint::pickle::read(data);
    if let Ok(ckpt) = TorchCheckpoint::read(data) {
        for t in ckpt.tensors.values() {
            let _ = t.load(data, &candle_core::Device::Cpu);
        }
    }
});
