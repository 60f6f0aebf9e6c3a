//! A tiny native HTTP/1.1 keep-alive server (std only, one thread per connection) that
//! answers every request with a fixed hello. It is the "trivially fast target" the load
//! generator is measured against, to show the generator is not the bottleneck.
//! Build: rustc -O fast_server.rs; run: fast_server <port> (prints "PORT <n>").
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

const BODY: &str = "{\"message\": \"Hello, World!\", \"path\": \"/hello\", \"method\": \"GET\"}";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    for line in text.split("\r\n") {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse().unwrap_or(0);
        }
    }
    0
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        BODY.len(),
        BODY
    );
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 65536];
    loop {
        // serve every complete request already buffered
        loop {
            let Some(end) = find(&buf, b"\r\n\r\n") else { break };
            let total = end + 4 + content_length(&buf[..end]);
            if buf.len() < total {
                break;
            }
            buf.drain(..total);
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    println!("PORT {}", listener.local_addr().unwrap().port());
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        thread::spawn(move || serve(stream));
    }
}
