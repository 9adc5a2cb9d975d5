#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lookout::fuzzing::hook_payload(data));
