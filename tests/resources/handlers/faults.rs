// A handler that misbehaves on request, through the SDK: GET /faults/{mode}.
// Modes: ok, panic, exit, hang, spin, stdout_spam, stderr_flood, alloc_bomb, fd_bomb,
// fork_bomb, file_bomb; and three that report what the worker can see: env, self (its
// /proc status, open fds and limits) and read (?path=...). The protocol-level faults are
// in faults_raw.rs.
use edgebook_sdk::prelude::*;
use std::collections::HashMap;
use std::io::Write;

extern "C" {
    fn fork() -> i32;
}

fn handle(req: Request) -> Response {
    let mode = req.path_param("mode").cloned().unwrap_or_default();
    match mode.as_str() {
        "ok" => Response::ok(json!({"ok": true, "pid": std::process::id()})),
        "panic" => panic!("asked to panic"),
        "exit" => std::process::exit(7),
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "stdout_spam" => {
            for i in 0..100_000 {
                println!("stdout line {i}: this goes to stderr, never into the frames");
            }
            Response::ok(json!({"spammed": 100_000}))
        }
        "stderr_flood" => {
            let line = [b'x'; 1023];
            let mut err = std::io::stderr().lock();
            for _ in 0..(32 * 1024) {
                let _ = err.write_all(&line);
                let _ = err.write_all(b"\n");
            }
            Response::ok(json!({"flooded_bytes": 32 * 1024 * 1024}))
        }
        "alloc_bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "fd_bomb" => {
            let mut files = Vec::new();
            let error = loop {
                match std::fs::File::open("/dev/null") {
                    Ok(file) => files.push(file),
                    Err(err) => break err.to_string(),
                }
            };
            Response::ok(json!({"opened": files.len(), "error": error}))
        }
        "fork_bomb" => {
            // Every process forks until the process limit refuses, then sleeps; the
            // request times out and the gateway kills the worker's process group.
            loop {
                if unsafe { fork() } < 0 {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
            }
        }
        "file_bomb" => {
            let dir = std::env::var("FAULT_DIR").unwrap_or_else(|_| "/tmp".into());
            let path = format!("{dir}/file-bomb-{}", std::process::id());
            let mut file = std::fs::File::create(&path).expect("create the file");
            let chunk = vec![0u8; 1 << 20];
            let mut written = 0usize;
            let error = loop {
                match file.write_all(&chunk) {
                    Ok(()) => written += chunk.len(),
                    Err(err) => break err.to_string(),
                }
            };
            let _ = std::fs::remove_file(&path);
            Response::ok(json!({"written": written, "error": error}))
        }
        "env" => Response::ok(json!(std::env::vars().collect::<HashMap<_, _>>())),
        "self" => {
            let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            Response::ok(json!({
                "status": std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
                "limits": std::fs::read_to_string("/proc/self/limits").unwrap_or_default(),
                "fds": fds,
                "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
            }))
        }
        "read" => {
            let path = req.query_param("path").cloned().unwrap_or_default();
            match std::fs::read(&path) {
                Ok(bytes) => Response::ok(json!({"read": true, "bytes": bytes.len()})),
                Err(err) => Response::ok(json!({"read": false, "error": err.to_string()})),
            }
        }
        other => Response::bad_request(format!("unknown mode {other:?}")),
    }
}

handler_loop!(handle);
