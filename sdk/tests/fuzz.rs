//! A deterministic fuzz loop over the frame reader: mutated golden frames (text and binary
//! body ones) and random bytes.
//!
//! No panic, no allocation past the maximum frame size (a huge announced length must be
//! refused from its 4 bytes), and every frame that decodes re-encodes to a frame that
//! decodes to the same thing. `EDGEBOOK_FUZZ_ITERATIONS` runs it longer (default 20000).

use std::fs;
use std::path::PathBuf;

use edgebook_sdk::frame::{read_frame, FrameError};

const MAX_FRAME: usize = 4096;

/// xorshift64*: small, seeded, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The golden frames: the text ones and the binary body ones (their valid vectors).
fn seeds() -> Vec<Vec<u8>> {
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
    let mut seeds: Vec<Vec<u8>> = ["valid", "binary"]
        .iter()
        .flat_map(|dir| fs::read_dir(vectors.join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("invalid_"))
        .map(|p| fs::read(p).unwrap())
        .filter(|b| b.len() <= MAX_FRAME + 4)
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty());
    seeds
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.truncate(rng.below(data.len() + 1)),
            2 if data.len() >= 4 => {
                let length = match rng.below(3) {
                    0 => rng.next() as u32,
                    1 => u32::MAX - rng.below(16) as u32,
                    _ => rng.below(MAX_FRAME + 16) as u32,
                };
                data[..4].copy_from_slice(&length.to_be_bytes());
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                data.extend_from_slice(other);
            }
            4 => {
                let i = rng.below(data.len() + 1);
                let byte = [b'{', b'}', b'"', b'\\', b'[', 0, 0xff, 0xc3][rng.below(8)];
                data.insert(i, byte);
            }
            5 => {
                let n = rng.below(64);
                data = (0..n).map(|_| rng.next() as u8).collect();
            }
            _ => {}
        }
    }
    data
}

#[test]
fn the_frame_reader_survives_mutated_and_random_streams() {
    let iterations: usize = std::env::var("EDGEBOOK_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seeds = seeds();
    let mut rng = Rng(0x5eed_f00d_dead_beef);
    let mut outcomes = std::collections::BTreeMap::<&'static str, usize>::new();
    for _ in 0..iterations {
        let data = mutate(&mut rng, &seeds);
        let mut stream: &[u8] = &data;
        loop {
            match read_frame(&mut stream, MAX_FRAME) {
                Ok(Some(frame)) => {
                    *outcomes.entry("frame").or_default() += 1;
                    if frame.body_bytes().is_some() {
                        *outcomes.entry("binary_frame").or_default() += 1;
                    }
                    let again = frame.encode();
                    assert!(again.len() <= MAX_FRAME + 4 || again.len() > data.len());
                    let mut replay: &[u8] = &again;
                    let decoded = read_frame(&mut replay, usize::MAX >> 1).unwrap().unwrap();
                    assert_eq!(decoded.to_value(), frame.to_value());
                    assert_eq!(decoded.body_bytes(), frame.body_bytes());
                }
                Ok(None) => break,
                Err(err) => {
                    if let FrameError::Oversized { length, max } = &err {
                        assert!(*length > *max as u64);
                    }
                    *outcomes.entry(err.kind()).or_default() += 1;
                    break;
                }
            }
        }
    }
    // The mutations reach every rule, not just one.
    for kind in ["frame", "binary_frame", "truncated", "oversized", "bad_json", "bad_utf8"] {
        assert!(outcomes.get(kind).copied().unwrap_or(0) > 0, "{kind} never hit: {outcomes:?}");
    }
}
