//! The web console in a real headless Chromium (Debian `chromium` + `chromium-driver`), driven
//! over WebDriver by fantoccini, against `wharf serve`: what an operator clicks is checked by
//! what a partner's real client (OpenSSH `sftp`) then sees.
//!
//! Screenshots of the main pages are written to `<target>/tmp/console-screenshots/` (CI keeps
//! them as artifacts; they are not committed).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A headless Chromium, through its own chromedriver, with a fresh profile.
struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
    base: String,
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

impl Browser {
    async fn start(wharf: &Wharf) -> Browser {
        let driver_path = require_tool(
            "chromedriver",
            "apt-get install -y chromium chromium-driver",
        );
        let chromium = require_tool("chromium", "apt-get install -y chromium chromium-driver");
        let port = free_port();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = profile.path().join("chromedriver.log");
        let mut driver = Command::new(driver_path);
        driver
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Chromium's processes are killed with it (see Drop), even
            // when a test panics before `close`.
            .process_group(0)
            .kill_on_drop(true);
        let driver = driver.spawn().expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().join("chrome").display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Chromium through chromedriver: {e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Browser {
            client,
            _driver: driver,
            _profile: profile,
            base: wharf.api_url(),
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits (10 s at most) for an element and returns it.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match tokio::time::timeout(
            Duration::from_secs(10),
            self.client.wait().for_element(Locator::Css(css)),
        )
        .await
        {
            Ok(Ok(element)) => element,
            _ => panic!(
                "no element `{css}` on {}:\n{}",
                self.path().await,
                self.main_text().await
            ),
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let element = self.find(css).await;
        element.clear().await.expect("clear");
        element.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Clicks a link or submit button and waits until the next page replaced this one, so
    /// that nothing is read from the old page.
    async fn click_nav(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.expect("page");
        self.click(css).await;
        self.wait_replaced(old, css).await;
    }

    async fn wait_replaced(&self, old: fantoccini::elements::Element, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while old.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "no new page after {after}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The new page's document is there once its body is.
        self.find("body").await;
    }

    /// Clicks a button whose form asks "are you sure?", says yes, and waits for the next page.
    async fn click_and_confirm(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.expect("page");
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.client.accept_alert().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "no confirmation dialog after {css}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_replaced(old, css).await;
    }

    async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    async fn main_text(&self) -> String {
        match self.client.find(Locator::Css("main")).await {
            Ok(main) => main.text().await.unwrap_or_default(),
            Err(_) => self.client.source().await.unwrap_or_default(),
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write png");
    }

    async fn sign_in(&self) {
        self.goto("/ui/users").await;
        // Not signed in yet: the console asks for a key.
        assert!(
            self.path().await.starts_with("/ui/sign-in"),
            "{}",
            self.path().await
        );
        self.fill("#apiKey", ADMIN_KEY).await;
        self.click_nav("#sign-in").await;
        self.find("#new-user").await;
        assert_eq!(self.path().await, "/ui/users");
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self._driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The password of a partner works over SFTP (OpenSSH) when `ls` succeeds.
async fn sftp_login_works(wharf: &Wharf, user: &str, password: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        wharf.sftp_port,
        user,
        Auth::Password(password),
        dir.path(),
        "ls\n",
    )
    .await;
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_create_user_and_log_in_over_sftp() {
    require_tool("sftp", "apt-get install -y openssh-client");
    let wharf = Wharf::start().await;
    let browser = Browser::start(&wharf).await;

    // A wrong key is refused on the page, and nothing is set.
    browser.goto("/ui/sign-in").await;
    browser.screenshot("01-sign-in").await;
    browser.fill("#apiKey", "not-a-key").await;
    browser.click_nav("#sign-in").await;
    let error = browser.text("#sign-in-error").await;
    assert!(error.contains("not valid"), "{error}");
    browser.sign_in().await;
    browser.screenshot("02-users-empty").await;

    // New user: one short form.
    browser.click_nav("#new-user").await;
    browser.fill("#description", "Trading partner Alice").await;
    // A relative home comes back with the API's message next to the field.
    browser.fill("#homeDirectory", "alice").await;
    browser.click_nav("#create-user").await;
    let message = browser.text("#homeDirectory-error").await;
    assert!(!message.is_empty());
    assert_eq!(
        browser
            .find("#homeDirectory")
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    // What was typed is kept.
    assert_eq!(browser.value("#description").await, "Trading partner Alice");
    browser.screenshot("03-new-user-error").await;
    browser.fill("#homeDirectory", "/alice").await;
    browser.click_nav("#create-user").await;

    // The result page: username, password (once), host, ports, fingerprints, commands.
    let username = browser.value("#username").await;
    let password = browser.value("#password").await;
    assert!(
        username.len() == 8
            && username
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        "{username}"
    );
    assert!(password.len() >= 16, "{password}");
    assert_eq!(
        browser.text("#sftp-port").await,
        wharf.sftp_port.to_string()
    );
    assert_eq!(
        browser.text("#ftps-port").await,
        wharf.ftps_port.to_string()
    );
    let page = browser.main_text().await;
    assert!(
        page.contains("SHA256:"),
        "host key fingerprints are shown:\n{page}"
    );
    assert!(page.contains("shown only on this page"), "{page}");
    let sftp_command = browser.value("#sftp-command").await;
    assert_eq!(
        sftp_command,
        format!("sftp -P {} {username}@localhost", wharf.sftp_port)
    );
    assert!(
        browser
            .value("#lftp-command")
            .await
            .contains(&format!("-u {username}"))
    );
    browser.screenshot("04-user-created").await;

    // The partner logs in with what the page showed.
    assert!(sftp_login_works(&wharf, &username, &password).await);

    // The list shows the user, and search finds it by its description.
    browser.goto("/ui/users?search=partner%20ALICE").await;
    let table = browser.text("#users").await;
    assert!(
        table.contains(&username) && table.contains("/alice"),
        "{table}"
    );
    assert!(table.contains("Trading partner Alice"), "{table}");
    browser.screenshot("05-users").await;
    browser.goto("/ui/users?search=nobody-like-this").await;
    assert!(browser.main_text().await.contains("No user matches"));

    // Sign out: the console asks for a key again.
    browser.goto("/ui/users").await;
    browser.click_nav("#sign-out").await;
    browser.find("#apiKey").await;
    browser.goto("/ui/users").await;
    assert!(browser.path().await.starts_with("/ui/sign-in"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_password_keys_disable_and_delete() {
    require_tool("sftp", "apt-get install -y openssh-client");
    let wharf = Wharf::start().await;
    let (username, old_password) = wharf
        .create_user("/bob", json!({"description": "Bob"}))
        .await;
    assert!(sftp_login_works(&wharf, &username, &old_password).await);
    let browser = Browser::start(&wharf).await;
    browser.sign_in().await;
    browser.goto(&format!("/ui/users/{username}")).await;
    browser.screenshot("06-user").await;

    // Reset: the new password works, the old one no longer does.
    browser.click_and_confirm("#reset-password").await;
    let new_password = browser.value("#password").await;
    assert_ne!(new_password, old_password);
    assert!(sftp_login_works(&wharf, &username, &new_password).await);
    assert!(!sftp_login_works(&wharf, &username, &old_password).await);

    // Add a public key: the partner logs in with it.
    let keys = tempfile::tempdir().unwrap();
    let (key_path, public_key) = keygen(keys.path(), "bob-key");
    browser.goto(&format!("/ui/users/{username}")).await;
    browser.fill("#publicKey", "ssh-ed25519 garbage").await;
    browser.click_nav("#add-key button[type=submit]").await;
    assert!(!browser.text("#publicKey-error").await.is_empty());
    browser.fill("#publicKey", &public_key).await;
    browser.click_nav("#add-key button[type=submit]").await;
    assert!(browser.text("#notice").await.contains("public keys"));
    assert!(browser.main_text().await.contains("bob-key"));
    let dir = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        wharf.sftp_port,
        &username,
        Auth::Key(&key_path),
        dir.path(),
        "ls\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));

    // Disable: the password no longer logs in; enable again: it does.
    browser.click("#disabled").await;
    browser.click_nav("#save-user").await;
    assert!(browser.text("#notice").await.contains("Saved"));
    let (_, user) = wharf
        .api(Method::GET, &format!("/v1/users/{username}"), None)
        .await;
    assert_eq!(user["disabled"], true);
    assert!(!sftp_login_works(&wharf, &username, &new_password).await);
    browser.click("#disabled").await;
    browser.click_nav("#save-user").await;
    browser.find("#notice").await;
    assert!(sftp_login_works(&wharf, &username, &new_password).await);

    // Delete, after a confirmation page.
    browser.click_nav("#delete-user").await;
    browser.screenshot("07-delete-user").await;
    browser.click_nav("#confirm-delete").await;
    assert!(browser.text("#notice").await.contains("Deleted user"));
    let (status, _) = wharf
        .api(Method::GET, &format!("/v1/users/{username}"), None)
        .await;
    assert_eq!(status, 404);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_in_the_browser_and_download_over_sftp() {
    require_tool("sftp", "apt-get install -y openssh-client");
    let wharf = Wharf::start().await;
    let (username, password) = wharf
        .create_user("/carol", json!({"description": "Carol"}))
        .await;
    let browser = Browser::start(&wharf).await;
    browser.sign_in().await;
    browser.goto(&format!("/ui/users/{username}")).await;
    browser.click_nav("#browse-files").await;
    browser.find("#upload-form").await;
    assert!(
        browser.path().await.contains("path=carol"),
        "{}",
        browser.path().await
    );

    // A folder, then a 3 MiB file uploaded into it (more than any form limit: it streams).
    browser.fill("#folder-name", "inbound").await;
    browser.click_nav("#create-folder").await;
    assert!(browser.text("#notice").await.contains("inbound"));
    browser.click_nav("a.folder").await;
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 1024 * 1024 + 17);
    write_file(local.path(), "invoice 1.edi", &data);
    let file_input = browser.find("#file").await;
    file_input
        .send_keys(&local.path().join("invoice 1.edi").display().to_string())
        .await
        .expect("choose file");
    browser.click_nav("#upload").await;
    let notice = browser.text("#notice").await;
    assert!(notice.contains("invoice 1.edi"), "{notice}");
    assert!(browser.text("#files").await.contains("3.0 MiB"));
    browser.screenshot("08-files").await;

    // The partner downloads it over SFTP, byte for byte.
    let out = sftp_batch(
        wharf.sftp_port,
        &username,
        Auth::Password(&password),
        local.path(),
        "get \"/inbound/invoice 1.edi\" got.edi\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(sha256(&read_file(local.path(), "got.edi")), sha256(&data));

    // The console's download link serves it as an attachment, never as a page.
    let href = browser
        .find("a.file")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("download link");
    let response = reqwest::Client::new()
        .get(format!("{}{href}", wharf.api_url()))
        .header("Cookie", format!("wharf_console={ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(sha256(&response.bytes().await.unwrap()), sha256(&data));

    // The upload is an event like any other, by protocol `api`.
    let (_, events) = wharf
        .api(Method::GET, "/v1/events?type=file.created", None)
        .await;
    let event = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["key"] == "carol/inbound/invoice 1.edi")
        .unwrap_or_else(|| panic!("no file.created event: {events}"));
    assert_eq!(event["data"]["protocol"], "api");
    assert_eq!(event["data"]["sha256"], sha256(&data));

    // Delete it in the console: the partner no longer sees it.
    browser.click_and_confirm("#files button.danger").await;
    assert!(browser.text("#notice").await.contains("Deleted"));
    let out = sftp_batch(
        wharf.sftp_port,
        &username,
        Auth::Password(&password),
        local.path(),
        "ls -1 /inbound\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout(&out).contains("invoice"), "{}", text(&out));
    browser.close().await;
}

/// Deliveries the test's receiver got.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

async fn receive(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    received.0.lock().unwrap().push((headers, body));
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_created_and_deliveries_listed() {
    require_tool("sftp", "apt-get install -y openssh-client");
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Failed deliveries die after a second instead of a day, so that one can be retried.
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec!["--webhook-retry-period".into(), "1".into()],
        ..StartOptions::default()
    })
    .await;
    let (username, password) = wharf
        .create_user("/dave", json!({"description": "Dave"}))
        .await;
    let browser = Browser::start(&wharf).await;
    browser.sign_in().await;
    browser.goto("/ui/webhooks").await;
    // A bad URL is refused next to the field.
    browser.fill("#url", "not a url").await;
    browser.click_nav("#create-webhook").await;
    assert!(!browser.text("#url-error").await.is_empty());
    browser.fill("#url", &receiver_url).await;
    browser.click_nav("#create-webhook").await;
    let secret = browser.value("#secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.screenshot("09-webhook-created").await;
    browser.click_nav("#to-webhook").await;
    browser.find("#no-deliveries").await;

    // A partner uploads; the delivery shows up with the receiver's status.
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "order.csv", b"id,qty\n1,2\n");
    let out = sftp_batch(
        wharf.sftp_port,
        &username,
        Auth::Password(&password),
        local.path(),
        "put order.csv\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        browser.client.refresh().await.expect("reload");
        if let Ok(row) = browser
            .client
            .find(Locator::Css(
                "#deliveries tr.delivery[data-state=succeeded]",
            ))
            .await
        {
            let row = row.text().await.unwrap();
            assert!(row.contains("file.created") && row.contains("200"), "{row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no succeeded delivery listed:\n{}",
            browser.main_text().await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser.screenshot("10-webhook-deliveries").await;
    {
        let got = received.0.lock().unwrap();
        let (headers, body) = got.first().expect("the receiver got the delivery");
        assert!(
            headers["webhook-signature"]
                .to_str()
                .unwrap()
                .starts_with("v1,")
        );
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(body["data"]["key"], "dave/order.csv");
    }

    // The events page lists it, and refreshes itself with new ones.
    browser.goto("/ui/events").await;
    let rows = browser.text("#event-rows").await;
    assert!(
        rows.contains("dave/order.csv") && rows.contains("file.created"),
        "{rows}"
    );
    write_file(local.path(), "second.csv", b"id\n2\n");
    let out = sftp_batch(
        wharf.sftp_port,
        &username,
        Auth::Password(&password),
        local.path(),
        "put second.csv\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser.text("#event-rows").await.contains("second.csv") {
        assert!(Instant::now() < deadline, "the live list did not refresh");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser.screenshot("11-events").await;

    // A webhook whose receiver is down: its delivery dies, and Retry sends it again once the
    // receiver is up.
    let late_port = free_port();
    browser.goto("/ui/webhooks").await;
    browser
        .fill("#url", &format!("http://127.0.0.1:{late_port}/hook"))
        .await;
    browser.click_nav("#create-webhook").await;
    browser.click_nav("#to-webhook").await;
    let webhook_page = browser.path().await;
    write_file(local.path(), "third.csv", b"id\n3\n");
    let out = sftp_batch(
        wharf.sftp_port,
        &username,
        Auth::Password(&password),
        local.path(),
        "put third.csv\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let dead = "#deliveries tr.delivery[data-state=dead]";
    wait_for_row(&browser, dead, "a dead delivery").await;
    let row = browser.text(dead).await;
    assert!(row.contains("no answer"), "{row}");
    browser.screenshot("12-dead-delivery").await;
    let late = Received::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", late_port))
        .await
        .unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(late.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    browser.click_nav(&format!("{dead} button")).await;
    assert!(browser.text("#notice").await.contains("pending again"));
    assert_eq!(
        browser.path().await.split('?').next(),
        webhook_page.split('?').next()
    );
    wait_for_row(
        &browser,
        "#deliveries tr.delivery[data-state=succeeded]",
        "the retried delivery succeeding",
    )
    .await;
    let body: Value = serde_json::from_slice(&late.0.lock().unwrap()[0].1).unwrap();
    assert_eq!(body["data"]["key"], "dave/third.csv");
    browser.close().await;
}

/// Reloads the page until `css` matches (30 s at most).
async fn wait_for_row(browser: &Browser, css: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        browser.client.refresh().await.expect("reload");
        if browser.client.find(Locator::Css(css)).await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}:\n{}",
            browser.main_text().await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Without a browser: a change needs the session's CSRF token, and cross-site posts are
/// refused even with it.
#[tokio::test]
async fn changes_need_the_csrf_token() {
    let wharf = Wharf::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = format!("wharf_console={ADMIN_KEY}");
    let form = "description=x&homeDirectory=%2Fx&permissions=read-write";
    let post = |body: String, origin: Option<&str>| {
        let mut request = http
            .post(format!("{}/ui/users", wharf.api_url()))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    assert_eq!(post(form.to_owned(), None).await.unwrap().status(), 403);
    // The token is on every page of the session.
    let page = http
        .get(format!("{}/ui/users/new", wharf.api_url()))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the form")
        .to_owned();
    let with_token = format!("{form}&csrf={token}");
    assert_eq!(
        post(with_token.clone(), Some("http://evil.example"))
            .await
            .unwrap()
            .status(),
        403
    );
    let created = post(with_token, Some(&wharf.api_url())).await.unwrap();
    assert_eq!(created.status(), 200, "the credentials page");
    assert!(created.text().await.unwrap().contains("id=\"password\""));
    // Without a cookie, pages send to the sign-in page.
    let response = http
        .get(format!("{}/ui/users", wharf.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/sign-in")
    );
    // The API itself is untouched by the console.
    let (status, _) = wharf.api(Method::GET, "/v1/users", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_only_users_and_chosen_passwords() {
    require_tool("sftp", "apt-get install -y openssh-client");
    let wharf = Wharf::start().await;
    let browser = Browser::start(&wharf).await;
    browser.sign_in().await;

    // New user without password login, with a chosen password (under More options).
    browser.click_nav("#new-user").await;
    browser.fill("#description", "Migrated partner").await;
    browser.fill("#homeDirectory", "/migrated").await;
    assert!(
        browser
            .find("#passwordEnabled")
            .await
            .prop("checked")
            .await
            .unwrap()
            .as_deref()
            == Some("true"),
        "password login is allowed by default"
    );
    browser.click("#passwordEnabled").await;
    browser.click("details summary").await;
    browser.fill("#password", "too short").await;
    browser.click_nav("#create-user").await;
    // The API's message is next to the field, the options are open, the secret not sent back.
    let message = browser.text("#password-error").await;
    assert!(message.contains("16 to 128"), "{message}");
    assert_eq!(browser.value("#password").await, "");
    assert_eq!(browser.value("#description").await, "Migrated partner");
    browser.screenshot("13-new-user-password-error").await;
    let chosen = "Kept-From-The-Old-Server-1";
    browser.fill("#password", chosen).await;
    browser.click_nav("#create-user").await;

    // The credentials: the password given, a note that it does not log in yet, and the FTPS
    // certificate's fingerprint as the API tells it.
    let username = browser.value("#username").await;
    assert_eq!(browser.value("#password").await, chosen);
    assert!(browser.text("#password-off").await.contains("public key"));
    let (_, server) = wharf.api(Method::GET, "/v1/server", None).await;
    let fingerprint = server["ftpsCertificateSha256"].as_str().unwrap().to_owned();
    assert_eq!(browser.text("#ftps-certificate").await, fingerprint);
    browser.screenshot("14-key-only-user-created").await;
    let (_, user) = wharf
        .api(Method::GET, &format!("/v1/users/{username}"), None)
        .await;
    assert_eq!(user["passwordEnabled"], false);
    assert!(!sftp_login_works(&wharf, &username, chosen).await);

    // Allowing password login on the user's page lets the chosen password in.
    browser.goto(&format!("/ui/users/{username}")).await;
    assert!(browser.text("h1").await.contains("keys only"));
    browser.click("#passwordEnabled").await;
    browser.click_nav("#save-user").await;
    assert!(browser.text("#notice").await.contains("Saved"));
    let (_, user) = wharf
        .api(Method::GET, &format!("/v1/users/{username}"), None)
        .await;
    assert_eq!(user["passwordEnabled"], true);
    assert!(sftp_login_works(&wharf, &username, chosen).await);

    // A chosen password beside "Reset password": refused with the reason next to it, then set.
    browser
        .fill("#newPassword", " leading space password")
        .await;
    browser.click_and_confirm("#reset-password").await;
    let message = browser.text("#newPassword-error").await;
    assert!(message.contains("whitespace"), "{message}");
    assert!(
        sftp_login_works(&wharf, &username, chosen).await,
        "unchanged"
    );
    let another = "Set-Beside-Reset-Password";
    browser.fill("#newPassword", another).await;
    browser.click_and_confirm("#reset-password").await;
    assert_eq!(browser.value("#password").await, another);
    assert!(sftp_login_works(&wharf, &username, another).await);
    assert!(!sftp_login_works(&wharf, &username, chosen).await);
    browser.close().await;
}

/// Without a browser: the bans page lists a ban after failed logins and lifts it (with the
/// session's CSRF token).
#[tokio::test]
async fn bans_are_listed_and_lifted() {
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec![
            "--defender-safe-list".into(),
            "none".into(),
            "--defender-address-threshold".into(),
            "2".into(),
        ],
        ..StartOptions::default()
    })
    .await;
    // One guess at a user that does not exist counts 2: loopback (not safe here) is banned.
    assert!(rust_sftp(wharf.sftp_port, "nobody", "guess").await.is_err());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = format!("wharf_console={ADMIN_KEY}");
    let page = http
        .get(format!("{}/ui/bans", wharf.api_url()))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("127.0.0.1/32"), "{page}");
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the form")
        .to_owned();
    let lifted = http
        .post(format!("{}/ui/bans/lift", wharf.api_url()))
        .header("Cookie", &cookie)
        .header("Origin", wharf.api_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&kind=address&target=127.0.0.1%2F32"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 303);
    assert_eq!(lifted.headers()["location"], "/ui/bans?notice=lifted");
    let (status, body) = wharf.api(Method::GET, "/v1/bans", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"], serde_json::json!([]));
    let page = http
        .get(format!("{}/ui/bans?notice=lifted", wharf.api_url()))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("No bans in force."), "{page}");
}
