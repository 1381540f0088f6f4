//! Fuzzes the installer pattern language: parsing any text and matching any frame never panics, and a parsed pattern prints back to an equal pattern.
#![no_main]

use drivers::serial::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, frame) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(pattern) = Pattern::parse(source) {
        let _ = pattern.matches(frame);
        let printed = pattern.to_string();
        assert_eq!(Pattern::parse(&printed).as_ref(), Ok(&pattern), "{printed}");
    }
});
