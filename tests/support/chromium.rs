//! Headless Chromium for the tests that need a real browser (the
//! dashboard, compression dictionaries).

/// A Chromium to drive, if one is installed. `.ci/run` installs Chromium
/// and sets TOWER_PERF_REQUIRE_CHROMIUM=1; elsewhere the tests that need
/// it are skipped (saying which `check`) when it is missing.
pub fn find(check: &str) -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        });
    if found.is_none() {
        assert!(
            std::env::var_os("TOWER_PERF_REQUIRE_CHROMIUM").is_none(),
            "chromium required"
        );
        super::skipped(check, "chromium is not installed (Debian package chromium)");
    }
    found
}

/// The page at `url` after 9 s of (virtual) time in headless Chromium,
/// with a fresh profile named after `name`.
pub async fn dump_dom(chromium: &'static str, url: String, name: &str) -> String {
    let out = run(chromium, url, name, "--dump-dom".to_owned()).await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PNG of the page at `url` after 9 s of (virtual) time, 1280 pixels
/// wide, written to `path`.
pub async fn screenshot(chromium: &'static str, url: String, name: &str, path: &std::path::Path) {
    let out = run(
        chromium,
        url,
        name,
        format!("--screenshot={}", path.display()),
    )
    .await;
    assert!(
        path.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn run(
    chromium: &'static str,
    url: String,
    name: &str,
    what: String,
) -> std::process::Output {
    let profile =
        std::env::temp_dir().join(format!("tower-perf-chromium-{name}-{}", std::process::id()));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,1900",
                &format!("--user-data-dir={}", profile.display()),
                "--virtual-time-budget=9000",
                &what,
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("chromium runs")
}
