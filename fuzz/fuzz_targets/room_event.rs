#![no_main]
//! Fuzzes `newt_crypto::fuzz_entry::room_event`: it must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    newt_crypto::fuzz_entry::room_event(data);
});
