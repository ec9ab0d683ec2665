//! Preconditions on GET and HEAD (RFC 9110 §13): If-None-Match and the
//! fields of its 304, If-Modified-Since, If-Match and
//! If-Unmodified-Since, and their order of evaluation (§13.2.2).

use axum::http::{Method, StatusCode};
use http_body_util::Full;
use tower_perf::cache_control::EtagMode;

use crate::{AFTER, BEFORE, LM, layer, server, server_with};

#[tokio::test]
async fn if_none_match_gives_304_with_the_right_headers() {
    let (s, _) = server().await;
    let r = s.get_with("/tagged", &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    for (h, v) in [
        ("etag", "\"v7\""),
        ("vary", "accept-language"),
        ("expires", AFTER),
        ("content-location", "/tagged.txt"),
    ] {
        assert_eq!(r.header(h), Some(v), "{h}");
    }
    assert_eq!(r.header("content-type"), None);
    assert_eq!(
        r.header("last-modified"),
        None,
        "ETag present: Last-Modified not needed"
    );
    // Weak comparison, lists and `*`.
    for inm in ["W/\"v7\"", "\"a\", \"v7\"", "*"] {
        assert_eq!(
            s.get_with("/tagged", &[("if-none-match", inm)])
                .await
                .status,
            StatusCode::NOT_MODIFIED,
            "{inm}"
        );
    }
    assert_eq!(
        s.get_with("/tagged", &[("if-none-match", "\"v8\"")])
            .await
            .status,
        StatusCode::OK
    );
    // HEAD revalidates like GET.
    let head = s
        .request(Method::HEAD, "/tagged")
        .header("if-none-match", "\"v7\"")
        .body(Full::default())
        .unwrap();
    assert_eq!(s.send(head).await.status, StatusCode::NOT_MODIFIED);
    // With a generated tag, and keeping the route policy on the 304.
    let tag = s
        .get("/static/app.js")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let r = s
        .get_with("/static/app.js", &[("if-none-match", &tag)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=31536000, immutable")
    );
    assert_eq!(r.header("etag"), Some(tag.as_str()));
}

#[tokio::test]
async fn if_modified_since() {
    let (s, _) = server().await;
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", LM)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", AFTER)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", BEFORE)])
            .await
            .status,
        StatusCode::OK
    );
    // The obsolete date formats are read too.
    let r = s
        .get_with(
            "/dated",
            &[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.header("etag").is_some(), "the generated validator");
    assert_eq!(
        r.header("last-modified"),
        None,
        "with an ETag, Last-Modified is left out"
    );
    let (no_tags, _) = server_with(layer().etags(EtagMode::Off)).await;
    let r = no_tags
        .get_with("/dated", &[("if-modified-since", LM)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        r.header("last-modified"),
        Some(LM),
        "no ETag: Last-Modified stays"
    );
    // Invalid dates are ignored.
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", "yesterday")])
            .await
            .status,
        StatusCode::OK
    );
    // Ignored when If-None-Match is present (§13.2.2 step 4).
    let r = s
        .get_with(
            "/tagged",
            &[("if-none-match", "\"other\""), ("if-modified-since", AFTER)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Without Last-Modified there is nothing to compare.
    assert_eq!(
        s.get_with("/api/items", &[("if-modified-since", AFTER)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn if_match_and_if_unmodified_since_on_get() {
    let (s, _) = server().await;
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "\"v7\"")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "*")]).await.status,
        StatusCode::OK
    );
    let r = s.get_with("/tagged", &[("if-match", "\"v1\"")]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.header("etag"), Some("\"v7\""));
    // Strong comparison: a weak tag never matches.
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "W/\"v7\"")])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    // An unreadable If-Match fails; an unreadable If-None-Match is ignored.
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "v7")]).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        s.get_with("/tagged", &[("if-none-match", "v7")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.get_with("/dated", &[("if-unmodified-since", BEFORE)])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        s.get_with("/dated", &[("if-unmodified-since", LM)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn precedence_of_rfc_9110_13_2_2() {
    let (s, _) = server().await;
    // 1 before 3: If-Match failing wins over a matching If-None-Match (412, not 304).
    let r = s
        .get_with(
            "/tagged",
            &[("if-match", "\"v1\""), ("if-none-match", "\"v7\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // 1 replaces 2: with If-Match present, If-Unmodified-Since is not evaluated.
    let r = s
        .get_with(
            "/tagged",
            &[("if-match", "\"v7\""), ("if-unmodified-since", BEFORE)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // 2 before 3: If-Unmodified-Since failing wins over a matching If-None-Match.
    let r = s
        .get_with(
            "/tagged",
            &[("if-unmodified-since", BEFORE), ("if-none-match", "\"v7\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // 3 before 4: a matching If-None-Match gives 304 whatever If-Modified-Since says.
    let r = s
        .get_with(
            "/tagged",
            &[("if-none-match", "\"v7\""), ("if-modified-since", BEFORE)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // Passing 1 and 2 leads on to 3.
    let r = s
        .get_with(
            "/tagged",
            &[("if-match", "\"v7\""), ("if-none-match", "\"v7\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // Preconditions only apply to 2xx: a 404 stays a 404.
    let r = s
        .get_with("/static/missing.js", &[("if-match", "\"x\"")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
