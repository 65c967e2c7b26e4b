//! Rendering arbitrary templates with arbitrary values (see `cases::render_case`).
#![no_main]

#[path = "../src/cases.rs"]
mod cases;

libfuzzer_sys::fuzz_target!(|data: &[u8]| cases::render_case(data));
