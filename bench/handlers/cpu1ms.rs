//! Spends about 1 ms of the worker thread's own CPU time per request, then answers.
use edgebook_sdk::prelude::*;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn cpu_ns() -> i64 {
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn handle(_req: Request) -> Response {
    let start = cpu_ns();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rounds: u64 = 0;
    while cpu_ns() - start < 1_000_000 {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        rounds += 1;
    }
    Response::ok(json!({ "rounds": rounds, "x": x }))
}

handler_loop!(handle);
