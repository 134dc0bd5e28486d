#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mnist_kit::fuzzing::checkpoint(data));
