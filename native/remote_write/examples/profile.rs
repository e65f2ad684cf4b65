//! Time the pure decoder on length-prefixed bodies (bench.py's requests dumped with a u32 LE
//! length each): `cargo run --release --no-default-features --example profile -- FILE [cold]`.
use mendloop_remote_write::decoder::{Decoder, Limits};
use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("a file of length-prefixed bodies");
    let data = std::fs::read(path).expect("readable");
    let mut bodies = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        bodies.push(&data[at + 4..at + 4 + n]);
        at += 4 + n;
    }
    let cold = std::env::args().nth(2).as_deref() == Some("cold");
    let limits = Limits {
        max_bytes: 64 << 20,
        max_samples: 10_000_000,
    };
    let mut decoder = Decoder::new(limits, 100_000);
    for _ in 0..5 {
        if cold {
            decoder = Decoder::new(limits, 100_000); // nothing cached: every label set is new
        }
        let start = Instant::now();
        let mut samples = 0;
        for body in &bodies {
            samples += decoder.decode(body).expect("valid").values.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:.0} ns/sample, {:.2} M samples/s",
            secs / samples as f64 * 1e9,
            samples as f64 / secs / 1e6
        );
    }
}
