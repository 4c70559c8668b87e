#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate::fuzz_targets::control_message(data));
