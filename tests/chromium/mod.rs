//! Headless Chromium driven through the DevTools protocol, for tests that run real browser code: launching it
//! (extra flags allowed), finding a page's debugger, evaluating JavaScript in it, and plain HTTP requests.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Bound on the browser starting, loading the page and connecting.
pub const BROWSER_WAIT: Duration = Duration::from_secs(30);

/// The first Chromium (or Chrome) on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
}

/// Headless Chromium with remote debugging on a free port; killed when dropped.
pub struct Browser {
    child: Child,
    /// The DevTools port.
    pub devtools_port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Launches Chromium on `url`.
    pub fn launch(chromium: &PathBuf, url: &str) -> Browser {
        Browser::launch_with(chromium, url, &[])
    }

    /// Launches Chromium on `url` with `extra` flags.
    pub fn launch_with(chromium: &PathBuf, url: &str, extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                    let port = rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
            }
        });
        let devtools_port = match rx.recv_timeout(BROWSER_WAIT) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("chromium did not announce its DevTools port: {other:?}");
            }
        };
        Browser {
            child,
            devtools_port,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 exchange (Connection: close); returns the whole response.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read the head, then exactly Content-Length bytes: not every server closes after answering.
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if response.len() >= head_end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            return String::from_utf8_lossy(&response).into_owned();
        }
        response.extend_from_slice(&chunk[..n]);
    }
}

/// The DevTools WebSocket URL of the page showing `url_prefix`, once the browser lists it.
pub async fn page_debugger_url(devtools_port: u16, url_prefix: &str) -> String {
    let devtools: SocketAddr = ([127, 0, 0, 1], devtools_port).into();
    loop {
        let response = http(devtools, "GET", "/json/list", "").await;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("[]");
        if let Ok(Value::Array(targets)) = serde_json::from_str::<Value>(body) {
            let page = targets.iter().find(|t| {
                t["type"] == "page" && t["url"].as_str().unwrap_or("").starts_with(url_prefix)
            });
            if let Some(ws) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                return ws.to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A DevTools connection to a page.
pub type DevTools =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The DevTools connection of the page showing `url_prefix`, once its MQTT client reports `subscribed` (the
/// test pages write their state into the element `status`); fails with what the page says otherwise.
pub async fn subscribed_page(devtools_port: u16, url_prefix: &str) -> DevTools {
    let ws_url = tokio::time::timeout(BROWSER_WAIT, page_debugger_url(devtools_port, url_prefix))
        .await
        .expect("the page never appeared in the DevTools target list");
    let (mut devtools, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let test = "text === 'subscribed' || text.startsWith('error')";
    let status = tokio::time::timeout(
        BROWSER_WAIT,
        evaluate(&mut devtools, &wait_for_text("status", test)),
    )
    .await
    .expect("the page did not subscribe in time");
    assert_eq!(status, "subscribed");
    devtools
}

/// Evaluates a JavaScript expression (awaiting it when it is a promise) in the page; returns its value.
/// An evaluation cut short by the page navigating (the first one may run in the blank page Chromium starts
/// with) is run again in the new document.
pub async fn evaluate<S>(devtools: &mut S, expression: &str) -> Value
where
    S: futures::Sink<Message>
        + futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
    <S as futures::Sink<Message>>::Error: std::fmt::Debug,
{
    for id in 1u64.. {
        let request = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "awaitPromise": true, "returnByValue": true },
        });
        devtools
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        let reply = loop {
            let Some(message) = devtools.next().await else {
                panic!("DevTools connection closed");
            };
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                break reply;
            }
        };
        let destroyed = reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("context was destroyed"));
        if destroyed {
            continue;
        }
        let value = &reply["result"]["result"]["value"];
        assert!(value.is_string(), "evaluation failed: {reply}");
        return value.clone();
    }
    unreachable!("ids are unbounded")
}

/// A promise that resolves with the element's text once `test(text)` holds, checking every 20 ms (the
/// element may not exist yet while the page loads).
pub fn wait_for_text(element: &str, test: &str) -> String {
    format!(
        "new Promise(resolve => {{ const check = () => {{ const el = document.getElementById('{element}'); \
         const text = el ? el.textContent : ''; \
         if ({test}) resolve(text); else setTimeout(check, 20); }}; check(); }})"
    )
}
