//! The query decoder and the form-body parser on arbitrary bytes
//! (`azbroker_server::fuzzing::query`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| azbroker_server::fuzzing::query(data));
