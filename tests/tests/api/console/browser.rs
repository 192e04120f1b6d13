//! The browser side of the console's test: chromedriver on a free port, a headless Chromium
//! session, waiting on the page, screenshots and the confirmation dialog.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// chromedriver on a free port, stopped when dropped.
pub(super) struct Driver {
    child: Child,
    port: u16,
    _profile: TempDir,
}

impl Drop for Driver {
    /// Stops chromedriver and the Chromium it started (its process group, made for it), even
    /// when the test failed before closing its session.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) const CHROMIUM: &str = "/usr/bin/chromium";
pub(super) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub(super) async fn browser() -> (Driver, Client) {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            std::path::Path::new(path).exists(),
            "the console's browser test needs {path}: install it with \
             `apt-get install -y {package}` (.ci/run does)"
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    use std::os::unix::process::CommandExt as _;
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile =
        TempDir(std::env::temp_dir().join(format!("console-chromium-{}", uuid::Uuid::new_v4())));
    std::fs::create_dir_all(&profile.0).unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .chain([format!("--user-data-dir={}", driver._profile.0.display())])
    .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": CHROMIUM, "args": args}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a chromium session through chromedriver: {e}"),
        }
    };
    (driver, client)
}

/// Polls a script until it returns something other than null/false; returns that.
pub(super) async fn until(c: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        if !(v.is_null() || v == Value::Bool(false)) {
            return v;
        }
        if Instant::now() > deadline {
            let text = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap();
            panic!(
                "waited in vain for {what}; the page shows:\n{}",
                text.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot of the whole page (the window is made as tall as the page first).
pub(super) async fn shot(c: &Client, width: u32, name: &str) {
    c.set_window_size(width, 900).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let height = c
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(1000);
    c.set_window_size(width, u32::try_from(height.clamp(600, 4000)).unwrap() + 140)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    // No element of the page carries an inline style (the policy refuses them).
    let inline = c
        .execute("return document.querySelectorAll('[style]').length", vec![])
        .await
        .unwrap();
    assert_eq!(inline, json!(0), "{name}: inline styles");
}

/// Finds an element by XPath, waiting for the page to draw it.
pub(super) async fn find_when(c: &Client, xpath: &str) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match c.find(Locator::XPath(xpath)).await {
            Ok(e) => return e,
            Err(e) if Instant::now() > deadline => panic!("{xpath} never showed: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub(super) async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub(super) async fn type_into(c: &Client, css: &str, text: &str) {
    let input = c.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

pub(super) const ENTER: &str = "\u{E007}";

/// Confirms the open dialog with the keyboard (its Confirm button has the focus); returns the
/// idempotency key it showed.
pub(super) async fn confirm(c: &Client) -> String {
    let key = until(
        c,
        "the confirmation dialog",
        "const d = document.getElementById('confirm'); return d.open && document.getElementById('confirm-key').textContent",
    )
    .await;
    let key = key.as_str().unwrap().to_owned();
    c.active_element()
        .await
        .unwrap()
        .send_keys(ENTER)
        .await
        .unwrap();
    until(
        c,
        "the action's answer",
        "const r = document.getElementById('confirm-result'); return (r.querySelector('.ok') || r.querySelector('.problem')) && r.innerText",
    )
    .await;
    let result = c
        .execute(
            "return document.getElementById('confirm-result').innerText",
            vec![],
        )
        .await
        .unwrap();
    let result = result.as_str().unwrap();
    assert!(result.contains("Done"), "the action failed: {result}");
    assert!(
        !result
            .lines()
            .any(|l| l.trim() == "null" || l.trim() == "undefined"),
        "{result}"
    );
    key
}

/// Closes the dialog of an action that was done, and waits for the page drawn again after it.
pub(super) async fn close_dialog(c: &Client) {
    let drawn = c
        .execute("return Number(document.body.dataset.drawn || 0)", vec![])
        .await
        .unwrap();
    click(c, "#confirm-cancel").await;
    until(
        c,
        "the page drawn again",
        &format!(
            "return !document.getElementById('confirm').open \
             && Number(document.body.dataset.drawn || 0) > {drawn}"
        ),
    )
    .await;
}
