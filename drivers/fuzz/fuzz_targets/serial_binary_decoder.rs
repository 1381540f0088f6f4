//! Fuzzes the binary serial decoder (XOR and sum-8 checksums): no panic, and the output never depends on how the bytes were chunked.
#![no_main]

use drivers::serial::{Decoder, Profile, ProfileSpec};
use libfuzzer_sys::fuzz_target;

fn decode(profile: &Profile, chunks: &[&[u8]]) -> Vec<drivers::serial::Decoded> {
    let mut decoder = Decoder::new(profile);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut out);
    }
    decoder.idle(&mut out);
    assert!(!decoder.is_mid_frame());
    assert_eq!(
        decoder.stats().bad_frames() + decoder.stats().events,
        out.len() as u64
    );
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let Some(mut spec) = ProfileSpec::builtin("binary-aa") else {
        return;
    };
    // Vary the checksum and the payload bound; keep the start byte common in random input.
    if let ProfileSpec::Binary(binary) = &mut spec {
        if selector & 1 == 1 {
            binary.checksum = drivers::serial::profile::ChecksumSpec::Sum8;
        }
        binary.max_payload = 1 + (selector >> 1) % 40;
    }
    let Ok(profile) = Profile::compile(&spec) else {
        return;
    };
    let whole = decode(&profile, &[bytes]);
    // Split at two points chosen by the selector byte.
    let a = usize::from(selector) % (bytes.len() + 1);
    let b = a + (usize::from(selector / 3) % (bytes.len() - a + 1));
    assert_eq!(
        decode(&profile, &[&bytes[..a], &bytes[a..b], &bytes[b..]]),
        whole
    );
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode(&profile, &singles), whole);
});
