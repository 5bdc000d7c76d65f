//! The example app end to end in a real browser: headless Chromium loads its page, MQTT.js connects over
//! WebSocket to the embedded broker and subscribes, and a message published through the REST endpoint
//! shows up on the page. Chromium is driven through the DevTools protocol. Skips only when no Chromium is
//! installed (`.ci/run` installs Debian's `chromium`).

#[path = "../examples/actix_web_app.rs"]
#[allow(dead_code)]
mod app;

mod needs;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// Bound on the browser starting, loading the page and connecting.
const BROWSER_WAIT: Duration = Duration::from_secs(30);

fn find_chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
}

/// The example app on its own thread and actix System; dropped, it stops the server and the broker.
struct AppThread {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl AppThread {
    fn start() -> AppThread {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let app = app::start("127.0.0.1:0", data_dir).await.unwrap();
                ready_tx.send(app.addr).unwrap();
                let server = app.server_handle();
                let running = actix_rt::spawn(app.server);
                let _ = stopped.await;
                server.stop(false).await;
                let _ = running.await;
                app.broker.shutdown().await;
            });
        });
        let addr = ready_rx.recv_timeout(BROWSER_WAIT).unwrap();
        AppThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for AppThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Headless Chromium with remote debugging on a free port; killed when dropped.
struct Browser {
    child: Child,
    devtools_port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(chromium: &PathBuf, url: &str) -> Browser {
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
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
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
async fn page_debugger_url(devtools_port: u16, url_prefix: &str) -> String {
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

/// Evaluates a JavaScript expression (awaiting it when it is a promise) in the page; returns its value.
/// An evaluation cut short by the page navigating (the first one may run in the blank page Chromium starts
/// with) is run again in the new document.
async fn evaluate<S>(devtools: &mut S, expression: &str) -> Value
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
fn wait_for_text(element: &str, test: &str) -> String {
    format!(
        "new Promise(resolve => {{ const check = () => {{ const el = document.getElementById('{element}'); \
         const text = el ? el.textContent : ''; \
         if ({test}) resolve(text); else setTimeout(check, 20); }}; check(); }})"
    )
}

#[tokio::test]
async fn the_example_page_shows_a_message_published_over_rest() {
    let Some(chromium) = find_chromium() else {
        needs::missing("no chromium on PATH (apt-get install chromium)");
        return;
    };
    let app = AppThread::start();
    let page_url = format!("http://{}/", app.addr);
    let browser = Browser::launch(&chromium, &page_url);
    let ws_url = timeout(
        BROWSER_WAIT,
        page_debugger_url(browser.devtools_port, &page_url),
    )
    .await
    .expect("the page never appeared in the DevTools target list");
    let (mut devtools, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let status = timeout(
        BROWSER_WAIT,
        evaluate(
            &mut devtools,
            &wait_for_text(
                "status",
                "text === 'subscribed' || text.startsWith('error')",
            ),
        ),
    )
    .await
    .expect("the page did not subscribe in time");
    assert_eq!(status, "subscribed");

    let response = http(app.addr, "POST", "/publish/browser/test", "hello from REST").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let messages = timeout(
        BROWSER_WAIT,
        evaluate(
            &mut devtools,
            &wait_for_text("messages", "text.includes('hello from REST')"),
        ),
    )
    .await
    .expect("the published message did not reach the page");
    assert!(
        messages
            .as_str()
            .unwrap_or("")
            .contains("browser/test: hello from REST"),
        "{messages}"
    );
    drop(devtools);
    drop(browser);
    drop(app);
}
