//! The config parser (`Config::parse`) on arbitrary text. The binary crate has no library, so its
//! `config` module (and the `paths` helpers it uses) are compiled in here from their sources.
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../crates/azbroker/src/paths.rs"]
mod paths;

#[path = "../../crates/azbroker/src/config/mod.rs"]
mod config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::Config::parse(text, None);
    }
});
