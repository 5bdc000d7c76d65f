//! The example app end to end in a real browser: headless Chromium loads its page, MQTT.js connects over
//! WebSocket to the embedded broker and subscribes, and a message published through the REST endpoint
//! shows up on the page. Chromium is driven through the DevTools protocol. Skips only when no Chromium is
//! installed (`.ci/run` installs Debian's `chromium`).

#[path = "../examples/actix_web_app.rs"]
#[allow(dead_code)]
mod app;

mod chromium;
mod needs;

use chromium::{
    evaluate, find_chromium, http, subscribed_page, wait_for_text, Browser, BROWSER_WAIT,
};
use std::net::SocketAddr;
use tokio::time::timeout;

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

#[tokio::test]
async fn the_example_page_shows_a_message_published_over_rest() {
    let Some(chromium) = find_chromium() else {
        needs::missing("no chromium on PATH (apt-get install chromium)");
        return;
    };
    let app = AppThread::start();
    let page_url = format!("http://{}/", app.addr);
    let browser = Browser::launch(&chromium, &page_url);
    let mut devtools = subscribed_page(browser.devtools_port, &page_url).await;

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
