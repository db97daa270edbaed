//! The dashboard's asset table and HTTP caching rules, without a server.

use std::io::Read as _;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{ASSETS, accepts_gzip, etag_matches, prepared, respond};

#[track_caller]
fn check_accepts(value: &str, expected: bool) {
    assert_eq!(accepts_gzip(value), expected, "Accept-Encoding: {value:?}");
}

#[test]
fn accept_encoding() {
    check_accepts("", false);
    check_accepts("gzip", true);
    check_accepts("gzip, deflate, br, zstd", true);
    check_accepts("br;q=1.0, GZIP;q=0.5", true);
    check_accepts("x-gzip", true);
    check_accepts("gzip;q=0", false);
    check_accepts("*", true);
    check_accepts("*;q=0", false);
    check_accepts("gzip;q=0, *", false);
    check_accepts("identity", false);
}

#[test]
fn if_none_match() {
    assert!(etag_matches("\"abc\"", "\"abc\""));
    assert!(etag_matches("W/\"abc\"", "\"abc\""));
    assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
    assert!(etag_matches("*", "\"abc\""));
    assert!(!etag_matches("\"abc-gz\"", "\"abc\""));
    assert!(!etag_matches("", "\"abc\""));
}

/// Every `/assets/…` the page references is embedded, and nothing is fetched from elsewhere.
#[test]
fn page_references_resolve() {
    let page = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
    assert_eq!(ASSETS[0].name, "index.html");
    let mut referenced = 0;
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            let url = &rest[..rest.find('"').expect("closing quote")];
            if url.starts_with('#') {
                continue;
            }
            let name = url
                .strip_prefix("/assets/")
                .unwrap_or_else(|| panic!("{url:?} is not an embedded asset"));
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{name} is not in ASSETS"
            );
            referenced += 1;
        }
    }
    assert!(
        referenced >= 3,
        "the page references its stylesheet, script and icon"
    );
    // The SVG namespace URI is a name, not a fetch.
    for asset in ASSETS.iter().filter(|a| a.name != "favicon.svg") {
        let text = String::from_utf8_lossy(asset.body);
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{} refers to an external URL",
            asset.name
        );
    }
}

fn request(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    headers
}

#[tokio::test]
async fn gzip_etag_and_not_modified() {
    let js = prepared()
        .iter()
        .find(|p| p.asset.name == "app.js")
        .expect("app.js");
    let response = respond(js, &request(&[(header::ACCEPT_ENCODING, "gzip, br")]));
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers[header::VARY], "accept-encoding");
    let etag = headers[header::ETAG].to_str().expect("ascii").to_owned();
    assert!(etag.ends_with("-gz\""), "{etag}");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut plain)
        .expect("valid gzip");
    assert_eq!(plain, js.asset.body);

    // Identity for a client that does not take gzip, with its own tag.
    let response = respond(js, &request(&[]));
    assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
    assert_ne!(response.headers()[header::ETAG], etag.as_str());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(&body[..], js.asset.body);

    // Revalidation.
    let mut headers = request(&[(header::ACCEPT_ENCODING, "gzip")]);
    headers.insert(
        header::IF_NONE_MATCH,
        HeaderValue::from_str(&etag).expect("header"),
    );
    let response = respond(js, &headers);
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()[header::ETAG], etag.as_str());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert!(body.is_empty());
}
