//! Lossy UTF-8 decoding with the output of `String::from_utf8_lossy`, fast on bodies that are
//! mostly not UTF-8.
//!
//! `from_utf8_lossy` is slow on random bytes (a binary body): almost every byte is
//! ill-formed, and each one is a chunk of its own and a mispredicted branch. Here:
//!
//! - Text goes to `str::from_utf8`, and is copied in one piece up to the next error.
//! - Errors far apart are replaced one by one, ASCII between them skipped 8 bytes at a time.
//! - Where errors are dense, a table-driven state machine without data-dependent branches
//!   takes over. Each byte is a step that looks up `STEPS[state][byte]`: the bytes to write
//!   (the byte itself and/or U+FFFD), their count, and two flags. The bytes of a sequence
//!   in progress are written as they come; when the sequence turns out ill-formed they are
//!   overwritten from where it started by one U+FFFD (its maximal subpart), and the byte
//!   that broke it is taken as the start of something new, in the same step. The next
//!   state comes from `NEXT[byte] >> state` (eight states, one byte each in a `u64`), so
//!   the chain from one byte's state to the next is a shift.
//!
//! The rules are those of std's `Utf8Chunks` (and of Unicode's substitution of maximal
//! subparts): C2..DF take one continuation byte 80..BF; E0 takes A0..BF then 80..BF;
//! E1..EC and EE..EF take 80..BF twice; ED takes 80..9F then 80..BF; F0 takes 90..BF,
//! F1..F3 80..BF, F4 80..8F, then 80..BF twice; 80..C1 and F5..FF are ill-formed alone. A
//! sequence cut short, by the end of the input or by a byte it cannot take, is one maximal
//! subpart: one U+FFFD.

use std::str;

/// U+FFFD REPLACEMENT CHARACTER in UTF-8.
const REPLACEMENT: [u8; 3] = [0xEF, 0xBF, 0xBD];

/// Bytes the state machine takes before it looks whether errors are still dense.
const CHUNK: usize = 32;

/// The state machine takes over at the `DENSE`th error in a row that follows the one before
/// after fewer than `CLOSE` well-formed bytes, and hands back after a chunk with fewer than
/// about `DENSE` errors. (Its cost per byte is the same whatever the bytes; an error done
/// alone costs about as much as 8 to 10 of its steps. One bad byte in text often makes two
/// or three errors: a character broken, and its orphaned continuation bytes.)
const CLOSE: usize = 4;
const DENSE: usize = 4;

/// `bytes` as a `String`: the bytes themselves when they are UTF-8 (no copy), otherwise
/// `String::from_utf8_lossy(&bytes)` together with `bytes`, given back.
pub(crate) fn to_string_lossy(bytes: Vec<u8>) -> Result<String, (String, Vec<u8>)> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let bytes = err.into_bytes();
            Err((decode(&bytes, valid), bytes))
        }
    }
}

/// `String::from_utf8_lossy(bytes)`, given that `bytes[..valid]` is UTF-8.
fn decode(bytes: &[u8], valid: usize) -> String {
    let n = bytes.len();
    // Twice the part after the first error: random bytes come out at about 1.8 times their
    // length (at most 3 times: then the buffer grows).
    let mut out = Vec::with_capacity(2 * n - valid + ROOM);
    out.extend_from_slice(&bytes[..valid]);
    // `bytes[copied..at]` is well-formed and not yet in `out`; `bytes[at]` starts a
    // character or an ill-formed sequence; the last error ended at `clean`, the last `close`
    // errors were close to each other.
    let (mut copied, mut at, mut clean, mut close) = (valid, valid, valid, 0);
    while at < n {
        if bytes[at] < 0x80 {
            at = skip_ascii(bytes, at + 1);
            continue;
        }
        let len = match sequence(&bytes[at..]) {
            // Text: `from_utf8` is fastest on it, up to the next error.
            Ok(_) => match str::from_utf8(&bytes[at..]) {
                Ok(_) => {
                    at = n;
                    continue;
                }
                Err(err) if err.valid_up_to() > 0 => {
                    at += err.valid_up_to();
                    continue;
                }
                Err(err) => err.error_len().unwrap_or(n - at), // not reached: the same rules
            },
            Err(len) => len,
        };
        out.extend_from_slice(&bytes[copied..at]);
        close = if at - clean < CLOSE { close + 1 } else { 1 };
        if close == DENSE {
            at = decode_dense(&mut out, bytes, at);
            close = 0;
        } else {
            out.extend_from_slice(&REPLACEMENT);
            at += len;
        }
        (copied, clean) = (at, at);
    }
    out.extend_from_slice(&bytes[copied..]);
    debug_assert!(str::from_utf8(&out).is_ok());
    // SAFETY: `out` is UTF-8: it is made of
    // - runs of `bytes` of ASCII bytes (`< 0x80`) and of stretches that `str::from_utf8`
    //   accepted, each run from and to a character boundary;
    // - U+FFFD;
    // - what `decode_dense` wrote from a character boundary: ASCII bytes, U+FFFD and
    //   multibyte sequences of which it took every byte only as the tables allow, by the
    //   rules of the module comment, which are UTF-8's (a sequence broken off is overwritten
    //   by U+FFFD from its start, and so is one still open at the end of the input); and it
    //   returns only between characters, with what it wrote past its end cut off.
    // The tests compare every input of up to three bytes, structured 4-byte inputs, every
    // (state, byte) step of the tables at chunk edges, and random inputs, with
    // `String::from_utf8_lossy`, and the `debug_assert!` above checks in test builds that
    // every output is UTF-8. Checking with `String::from_utf8` here would cost more than the
    // decoding of random bytes: their output alternates ASCII and U+FFFD, the validator's
    // worst case (about 3 ns a byte).
    unsafe { String::from_utf8_unchecked(out) }
}

/// The first byte at or after `at` that is not ASCII, or the end.
fn skip_ascii(bytes: &[u8], mut at: usize) -> usize {
    while let Some(word) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().unwrap_or([0x80; 8]));
        let high = word & 0x8080_8080_8080_8080;
        if high != 0 {
            return at + high.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    while at < bytes.len() && bytes[at] < 0x80 {
        at += 1;
    }
    at
}

/// The length of the multibyte character that starts `bytes`, or as `Err` that of the
/// maximal subpart of an ill-formed sequence there.
fn sequence(bytes: &[u8]) -> Result<usize, usize> {
    let mut state = state_after_lead(bytes[0]);
    let mut len = 1;
    while state != START {
        match bytes.get(len).and_then(|&byte| continue_with(state, byte)) {
            Some(next) => (state, len) = (next, len + 1),
            None => return Err(len),
        }
    }
    if len == 1 {
        Err(1) // ill-formed alone (the caller has taken ASCII)
    } else {
        Ok(len)
    }
}

/// The decoder's state: what the next byte must be. The values are shifts into a
/// `NEXT` word (state `k` is `8 * k`) and, times 32, row offsets into `STEPS`.
type State = usize;
/// Between characters.
const START: State = 0;
/// One more continuation byte, 80..BF.
const CONT_1: State = 8;
/// Two more, the first 80..BF.
const CONT_2: State = 16;
/// Two more, the first A0..BF (after E0: no overlong forms).
const CONT_2_E0: State = 24;
/// Two more, the first 80..9F (after ED: no surrogates).
const CONT_2_ED: State = 32;
/// Three more, the first 80..BF.
const CONT_3: State = 40;
/// Three more, the first 90..BF (after F0: no overlong forms).
const CONT_3_F0: State = 48;
/// Three more, the first 80..8F (after F4: nothing above U+10FFFF).
const CONT_3_F4: State = 56;

/// The state after a first byte: `START` for ASCII and for bytes that are ill-formed alone.
const fn state_after_lead(byte: u8) -> State {
    match byte {
        0xC2..=0xDF => CONT_1,
        0xE0 => CONT_2_E0,
        0xE1..=0xEC | 0xEE..=0xEF => CONT_2,
        0xED => CONT_2_ED,
        0xF0 => CONT_3_F0,
        0xF1..=0xF3 => CONT_3,
        0xF4 => CONT_3_F4,
        _ => START,
    }
}

/// Whether a sequence in `state` (not `START`) goes on with `byte`, and to which state.
const fn continue_with(state: State, byte: u8) -> Option<State> {
    let (low, high) = match state {
        CONT_2_E0 => (0xA0, 0xBF),
        CONT_2_ED => (0x80, 0x9F),
        CONT_3_F0 => (0x90, 0xBF),
        CONT_3_F4 => (0x80, 0x8F),
        _ => (0x80, 0xBF),
    };
    if byte < low || byte > high {
        return None;
    }
    Some(match state {
        CONT_1 => START,
        CONT_2 | CONT_2_E0 | CONT_2_ED => CONT_1,
        _ => CONT_2,
    })
}

/// A `STEPS` entry's flag: the sequence in progress broke off at this byte; write from
/// where it started.
const BROKE: u64 = 1 << 48;
/// A `STEPS` entry's flag: the byte goes on with the sequence in progress.
const GOES_ON: u64 = 1 << 49;

/// What taking `byte` in `state` does: bits 0..48 are the bytes to write, first byte
/// lowest; `BROKE` and `GOES_ON`; bits 56.. the number of bytes written.
const fn step(state: State, byte: u8) -> u64 {
    if state != START && continue_with(state, byte).is_some() {
        return byte as u64 | GOES_ON | 1 << 56;
    }
    // A new start: after a replacement for the sequence that broke off, if any.
    let (mut write, mut len, mut flags) = (0u64, 0u64, 0u64);
    if state != START {
        write = replacement();
        len = 3;
        flags = BROKE;
    }
    if byte >= 0x80 && state_after_lead(byte) == START {
        write |= replacement() << (8 * len);
        len += 3;
    } else {
        write |= (byte as u64) << (8 * len);
        len += 1;
    }
    write | flags | len << 56
}

const fn replacement() -> u64 {
    REPLACEMENT[0] as u64 | (REPLACEMENT[1] as u64) << 8 | (REPLACEMENT[2] as u64) << 16
}

/// The next state, by byte: `(NEXT[byte] >> state) & 0x38`.
static NEXT: [u64; 256] = {
    let mut next = [0u64; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut state = START;
        while state <= CONT_3_F4 {
            let after = match continue_with(state, byte as u8) {
                Some(after) if state != START => after,
                _ => state_after_lead(byte as u8),
            };
            next[byte] |= (after as u64) << state;
            state += 8;
        }
        byte += 1;
    }
    next
};

/// `step(state, byte)` at `STEPS[state * 32 + byte]`.
static STEPS: [u64; 2048] = {
    let mut steps = [0u64; 2048];
    let mut state = START;
    while state <= CONT_3_F4 {
        let mut byte = 0;
        while byte < 256 {
            steps[state * 32 + byte] = step(state, byte as u8);
            byte += 1;
        }
        state += 8;
    }
    steps
};

/// The decoder between two bytes: its state, where the next byte goes in `out` and where
/// the sequence in progress (if any) started there.
struct Machine {
    state: State,
    end: usize,
    started: usize,
}

impl Machine {
    /// Takes one byte. `out` has room for 8 bytes at `self.end`.
    #[inline(always)]
    fn take(&mut self, out: &mut [u8], byte: u8) {
        let step = STEPS[self.state * 32 + byte as usize];
        let at = if step & BROKE != 0 { self.started } else { self.end };
        // The unused high bytes land past the new end: overwritten or cut off later.
        out[at..at + 8].copy_from_slice(&step.to_le_bytes());
        self.end = at + (step >> 56) as usize;
        if step & GOES_ON == 0 {
            self.started = self.end - 1; // where this byte went, if it starts a sequence
        }
        self.state = (NEXT[byte as usize] >> self.state) as usize & 0x38;
    }
}

/// Decodes from `at`, an error, appending to `out`, until a chunk with few errors, or the
/// end. Returns where it stopped: between characters.
fn decode_dense(out: &mut Vec<u8>, bytes: &[u8], mut at: usize) -> usize {
    let n = bytes.len();
    let mut machine = Machine { state: START, end: out.len(), started: out.len() };
    loop {
        let stop = n.min(at + CHUNK);
        // Room for the steps: see `ROOM`.
        let room = machine.end + 3 * (stop - at) + ROOM;
        if out.len() < room {
            out.resize(room, 0);
        }
        let (from, written) = (at, machine.end);
        for &byte in &bytes[from..stop] {
            machine.take(out, byte);
        }
        at = stop;
        if at == n {
            if machine.state != START {
                // Cut short by the end of the input: one maximal subpart.
                machine.end = machine.started;
                out[machine.end..machine.end + 3].copy_from_slice(&REPLACEMENT);
                machine.end += 3;
            }
            out.truncate(machine.end);
            return n;
        }
        // An ill-formed byte alone adds 2 bytes to the output (U+FFFD for it), sequences
        // cut short 1 or 0: fewer than about `DENSE` errors in the chunk.
        if machine.state == START && machine.end - written < (at - from) + 2 * DENSE {
            out.truncate(machine.end);
            return at;
        }
    }
}

/// What `out` must hold past `end + 3 * k` for `k` more steps of a `Machine`.
///
/// With `p` the bytes of the sequence in progress (written, maybe to be overwritten), a
/// step adds at most 3 to `end + 2 * p`: 1 + 2 for a byte that goes on with a sequence or
/// starts one, 3 for a lone ill-formed byte, 1 - 2p (p >= 1) for a byte that ends a
/// sequence, and for one that breaks a sequence off (U+FFFD from its start) 4 - 3p after
/// ASCII, 6 - 3p after an ill-formed byte, 6 - 3p after a new first byte (p becomes 1).
/// So `end` stays below its value at the start plus `2 * 3` (p <= 3) plus 3 a step; a step
/// writes 8 bytes from at most `end`, and the end of the input U+FFFD from before `end`.
const ROOM: usize = 2 * 3 + 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(bytes: &[u8]) -> String {
        match to_string_lossy(bytes.to_vec()) {
            Ok(text) => text,
            Err((text, given_back)) => {
                assert_eq!(given_back, bytes);
                text
            }
        }
    }

    #[track_caller]
    fn check(bytes: &[u8]) {
        let expected = String::from_utf8_lossy(bytes);
        let got = lossy(bytes);
        if got != expected {
            panic!("{bytes:02x?}: got {got:?}, std gives {expected:?}");
        }
    }

    /// xorshift64: fixed seeds, the same inputs on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn utf8_is_taken_without_a_copy_and_anything_else_is_given_back() {
        let text = "grüße, 世界 🦀".to_owned().into_bytes();
        let pointer = text.as_ptr();
        let taken = to_string_lossy(text).unwrap();
        assert_eq!((taken.as_ptr(), taken.as_str()), (pointer, "grüße, 世界 🦀"));

        let bytes = b"PNG\x89\r\n\x1a\n\xff".to_vec();
        let (text, given_back) = to_string_lossy(bytes.clone()).unwrap_err();
        assert_eq!(text, "PNG\u{fffd}\r\n\u{1a}\n\u{fffd}");
        assert_eq!(given_back, bytes);
        assert_eq!(to_string_lossy(Vec::new()).unwrap(), "");
    }

    #[test]
    fn maximal_subparts_become_one_replacement_each() {
        let cases: [(&[u8], &str); 10] = [
            (b"\xed\xa0\x80", "\u{fffd}\u{fffd}\u{fffd}"), // a surrogate: ED takes 80..9F
            (b"\xe0\x80\x80", "\u{fffd}\u{fffd}\u{fffd}"), // overlong
            (b"\xf4\x90\x80\x80", "\u{fffd}\u{fffd}\u{fffd}\u{fffd}"), // above U+10FFFF
            (b"\xf0\x9f\x98", "\u{fffd}"),                 // cut short by the end
            (b"\xf0\x9f\x98a", "\u{fffd}a"),               // cut short by ASCII
            (b"\xf0\x9f\x98\xf0\x9f\x98\x80", "\u{fffd}\u{1f600}"),
            (b"\xe2\x82\xff", "\u{fffd}\u{fffd}"),
            (b"\xc0\xaf", "\u{fffd}\u{fffd}"),
            (b"\xf5\x80\x80\x80", "\u{fffd}\u{fffd}\u{fffd}\u{fffd}"),
            (b"\x80\xbf\xc2", "\u{fffd}\u{fffd}\u{fffd}"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(lossy(bytes), expected, "{bytes:02x?}");
            check(bytes);
        }
    }

    #[test]
    fn every_input_of_one_and_two_bytes() {
        for first in 0..=255u8 {
            check(&[first]);
            for second in 0..=255u8 {
                check(&[first, second]);
            }
        }
    }

    #[test]
    fn every_input_of_three_bytes() {
        // All 2^24 of them in batches of 256, each case followed by an ASCII byte (which
        // ends any sequence, so a batch decodes as its cases one by one); and alone, where
        // the end of the input cuts it short, each case that starts with C0..FF (one that
        // starts with 00..BF is a character or a lone ill-formed byte, then two bytes).
        let mut batch = Vec::with_capacity(4 * 256);
        for first in 0..=255u8 {
            for second in 0..=255u8 {
                batch.clear();
                for third in 0..=255u8 {
                    let case = [first, second, third];
                    if first >= 0xc0 && String::from_utf8_lossy(&case) != lossy(&case) {
                        check(&case);
                    }
                    batch.extend_from_slice(&case);
                    batch.push(b'|');
                }
                check(&batch);
            }
        }
    }

    /// Bytes around the edges of the ranges that the rules name.
    const EDGES: [u8; 14] =
        [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf4, 0xff];

    #[test]
    fn four_byte_inputs_from_every_first_byte() {
        for first in 0..=255u8 {
            for second in EDGES {
                for third in EDGES {
                    for fourth in EDGES {
                        check(&[first, second, third, fourth]);
                    }
                }
            }
        }
    }

    /// Ill-formed bytes enough for the state machine to take over (at the `DENSE`th) and
    /// to keep it on to the second chunk, then `case`.
    fn after_dense_errors(lead: usize, case: &[u8]) -> Vec<u8> {
        let mut input = vec![0xff; lead];
        input.extend_from_slice(case);
        input
    }

    /// Offsets around the end of the state machine's first and second chunk.
    fn leads_around_chunk_edges() -> impl Iterator<Item = usize> {
        let first_chunk_end = DENSE - 1 + CHUNK;
        (DENSE..DENSE + 2)
            .chain(first_chunk_end - 4..=first_chunk_end + 1)
            .chain(first_chunk_end + CHUNK - 4..=first_chunk_end + CHUNK + 1)
    }

    #[test]
    fn every_step_of_the_state_machine_at_chunk_edges() {
        // A way into each state (and each depth of a sequence in progress), then every byte,
        // then what follows: the end of the input, ASCII, a continuation byte, a first byte,
        // an ill-formed byte.
        let into_states: [&[u8]; 12] = [
            b"",
            b"\xc2",
            b"\xe0",
            b"\xe1",
            b"\xed",
            b"\xe1\x80",
            b"\xf0",
            b"\xf1",
            b"\xf4",
            b"\xf1\x80",
            b"\xf1\x80\x80",
            b"\xf4\x8f\xbf",
        ];
        for lead in leads_around_chunk_edges() {
            for into in into_states {
                for byte in 0..=255u8 {
                    for then in [&b""[..], b"a", b"\x80", b"\xe2", b"\xff"] {
                        let mut case = into.to_vec();
                        case.push(byte);
                        case.extend_from_slice(then);
                        check(&after_dense_errors(lead, &case));
                    }
                }
            }
        }
    }

    #[test]
    fn sequences_of_four_bytes_at_chunk_edges() {
        for first in [0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xf0, 0xf1, 0xf4, 0xf5, 0x80, 0x41] {
            for second in EDGES {
                for third in EDGES {
                    for fourth in [0x80, 0xbf, 0xc0, 0x41] {
                        for lead in leads_around_chunk_edges() {
                            let case = [first, second, third, fourth];
                            let mut input = after_dense_errors(lead, &case);
                            check(&input);
                            input.extend_from_slice(b"tail \xe2\x82\xac");
                            check(&input);
                        }
                    }
                }
            }
        }
    }

    /// A random input: stretches of ASCII, well-formed multibyte text, ill-formed bytes,
    /// broken-off sequences and random bytes, of random lengths.
    fn random_input(rng: &mut Rng, len: usize) -> Vec<u8> {
        const WELL_FORMED: [&str; 8] = ["a", " ", "é", "ж", "€", "中", "🦀", "\u{10ffff}"];
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            let longest = if rng.below(4) == 0 { 200 } else { 12 };
            let stretch = 1 + rng.below(longest);
            let kind = rng.below(6);
            for _ in 0..stretch {
                match kind {
                    0 => bytes.push(b' ' + rng.below(95) as u8),
                    1 => bytes.extend_from_slice(WELL_FORMED[rng.below(8)].as_bytes()),
                    2 => bytes.push([0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xff][rng.below(6)]),
                    3 => {
                        let whole = WELL_FORMED[2 + rng.below(6)].as_bytes();
                        bytes.extend_from_slice(&whole[..1 + rng.below(whole.len() - 1)]);
                    }
                    _ => bytes.push(rng.next() as u8),
                }
            }
        }
        bytes.truncate(len);
        bytes
    }

    #[test]
    fn random_inputs_of_random_lengths() {
        for seed in 1..=4000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let len = match seed % 4 {
                0 => rng.below(16),
                1 => rng.below(100),
                2 => rng.below(1000),
                _ => rng.below(5000),
            };
            check(&random_input(&mut rng, len));
        }
        let mut rng = Rng(0x5eed);
        for len in [1 << 16, 100_003] {
            let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check(&random);
            check(&random_input(&mut rng, len));
        }
    }
}
