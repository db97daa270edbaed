//! The web dashboard: `GET /` (the page) and `GET /assets/{file}` (its stylesheet, script and
//! icon). The files live in `control-plane/assets/` and are compiled into the binary with
//! `include_bytes!`, so the dashboard works with no internet and no files beside the binary.
//!
//! This module owns serving those bytes: content type, a strong `ETag` per encoding (a matching
//! `If-None-Match` gets `304`), `Cache-Control: no-cache` (revalidate every load, so a new binary's
//! assets are picked up at once while unchanged ones cost a 304), gzip when the client accepts it
//! (compressed once, on first use, and kept), and a strict Content-Security-Policy (`'self'`
//! only: the page loads nothing from elsewhere and runs no inline script).
//!
//! The page is unauthenticated on purpose: it holds no data. Everything it shows comes from the
//! authenticated JSON API, called by the browser with the operator's bearer token. This module
//! must not read the store, the registry or any other state.

use std::{io::Write as _, sync::OnceLock};

use axum::{
    body::Body,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::error::ApiError;

/// One embedded file.
#[derive(Debug)]
struct Asset {
    /// File name under `/assets/` (the page itself is `index.html`, served at `/`).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the dashboard consists of. `index.html` references the others by `/assets/NAME`; a
/// unit test checks that every reference resolves to an entry here.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../assets/favicon.svg"),
    },
];

/// Only this origin, no inline script or style, no framing. `img-src data:` is not needed: the
/// charts are inline SVG elements, not images.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /`: the page.
pub(super) async fn page(headers: HeaderMap) -> Response {
    match prepared().iter().find(|p| p.asset.name == "index.html") {
        Some(prepared) => respond(prepared, &headers),
        None => {
            ApiError::not_found("the dashboard page is missing from this build").into_response()
        }
    }
}

/// `GET /assets/{file}`.
pub(super) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match prepared().iter().find(|p| p.asset.name == file) {
        Some(prepared) => respond(prepared, &headers),
        None => ApiError::not_found(format!("no dashboard asset {file:?}")).into_response(),
    }
}

/// An asset with what is computed once: its ETags and its gzip body.
#[derive(Debug)]
struct Prepared {
    asset: &'static Asset,
    etag: String,
    /// `None` when gzip would not be smaller (or could not be made).
    gzip: Option<(Bytes, String)>,
}

fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| ASSETS.iter().map(prepare).collect())
}

fn prepare(asset: &'static Asset) -> Prepared {
    let digest = Sha256::digest(asset.body);
    // 64 bits of the hash are plenty to tell versions of one file apart.
    let tag = hex::encode(&digest[..8]);
    let gzip = gzip(asset.body)
        .filter(|compressed| compressed.len() < asset.body.len())
        .map(|compressed| (Bytes::from(compressed), format!("\"{tag}-gz\"")));
    Prepared {
        asset,
        etag: format!("\"{tag}\""),
        gzip,
    }
}

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

fn respond(prepared: &Prepared, request: &HeaderMap) -> Response {
    let accept = request
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (body, etag, gzipped) = match &prepared.gzip {
        Some((bytes, etag)) if accepts_gzip(accept) => (bytes.clone(), etag.as_str(), true),
        _ => (
            Bytes::from_static(prepared.asset.body),
            prepared.etag.as_str(),
            false,
        ),
    };
    let not_modified = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prepared.asset.content_type),
        );
        if gzipped {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether an `Accept-Encoding` value allows gzip: `gzip`, `x-gzip` or `*` with a q-value above 0
/// (RFC 9110 §12.5.3; an explicit `gzip;q=0` refuses it even when `*` is present).
fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = q > 0.0,
            _ => {}
        }
    }
    star
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 §13.1.2 asks for).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let etag = strip(etag);
    if_none_match
        .split(',')
        .any(|candidate| candidate.trim() == "*" || strip(candidate) == etag)
}

#[cfg(test)]
mod tests;
