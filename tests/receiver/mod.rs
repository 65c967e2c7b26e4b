//! A small HTTP/1.1 receiver on 127.0.0.1 that records every request and answers by its path,
//! for the tests of webhooks and alerts.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

pub const FAIL_BODY: &str = "deliberate failure from the test server";
/// Longer than any webhook timeout used here, shorter than the test's own bound.
pub const SLOW: Duration = Duration::from_millis(1500);

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
}

/// Answers by the first path segment: `/ok` 200, `/fail` 500 with a body, `/big` 503 with a
/// long body, `/echo` 500 quoting the path, `/flaky` 500 twice then 200 (counted per full path), `/slow` after `SLOW`.
pub struct Server {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let flaky: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, record.clone(), flaky.clone()));
            }
        });
        Self { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }
}

async fn serve(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    flaky: Arc<Mutex<HashMap<String, u32>>>,
) {
    let Some((head, body)) = read_request(&stream).await else {
        return;
    };
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<&str> = lines.collect();
    let header = |wanted: &str| {
        headers.iter().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_string())
        })
    };
    let content_type = header("content-type");
    let authorization = header("authorization");
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().expect("lock").push(Seen {
        method,
        path: path.clone(),
        content_type,
        authorization,
        body,
    });

    let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let (status, text) = match segment {
        "ok" => ("200 OK", String::new()),
        "fail" => ("500 Internal Server Error", FAIL_BODY.to_string()),
        "big" => ("503 Service Unavailable", "x".repeat(5000)),
        // A receiver that quotes the request back in its error, URL and all.
        "echo" => ("500 Internal Server Error", format!("no such hook: {path}")),
        "flaky" => {
            let calls = {
                let mut counts = flaky.lock().expect("lock");
                let count = counts.entry(path.clone()).or_default();
                *count += 1;
                *count
            };
            if calls <= 2 {
                ("500 Internal Server Error", format!("not yet ({calls})"))
            } else {
                ("200 OK", String::new())
            }
        }
        "slow" => {
            tokio::time::sleep(SLOW).await;
            ("200 OK", String::new())
        }
        _ => ("404 Not Found", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    // The client may have given up (timeouts): a failed write is expected then.
    let _ = write_all(&stream, response.as_bytes()).await;
}

/// The head (as text) and the body of one HTTP/1.1 request with a Content-Length.
async fn read_request(stream: &TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if read_some(stream, &mut buf).await? == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        if read_some(stream, &mut buf).await? == 0 {
            return None;
        }
    }
    Some((head, buf[head_end..head_end + length].to_vec()))
}

// tokio is built without io-util here, so read and write through readiness.
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        stream.readable().await.ok()?;
        match stream.try_read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Some(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
