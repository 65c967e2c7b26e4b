//! Loading arbitrary YAML as a Canary and as MetricTemplates (see `cases::load_case`).
#![no_main]

#[path = "../src/cases.rs"]
mod cases;

libfuzzer_sys::fuzz_target!(|data: &[u8]| cases::load_case(data));
