//! A raw HTTP/1.1 request head through everything of ours that reads one
//! (`azbroker_server::fuzzing::request_head`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| azbroker_server::fuzzing::request_head(data));
