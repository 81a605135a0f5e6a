#![no_main]
// Thin target: the logic lives in ringway::fuzz_logic so `cargo test` replays the same corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway::fuzz_logic::credentials_any(data));
