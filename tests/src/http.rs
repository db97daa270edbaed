//! HTTP helpers over the control plane's API.

use std::collections::BTreeMap;

use serde_json::Value;

/// A plain-HTTP client. reqwest is built without a default crypto provider (the workspace uses
/// ring only, configured explicitly), so `reqwest::Client::new()` would panic: use this.
///
/// # Panics
/// When the client cannot be built (no usable TLS configuration).
pub fn client() -> reqwest::Client {
    aisemble_agent::http_client::client(None, std::time::Duration::from_secs(60))
        .expect("building an HTTP client")
}

/// A client for one control plane.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    /// A client for `http://addr` with a bearer token.
    pub fn new(addr: std::net::SocketAddr, token: &str) -> Self {
        Self {
            base: format!("http://{addr}"),
            token: token.to_owned(),
            client: client(),
        }
    }

    /// `GET path` with the token; the status and the parsed JSON body.
    ///
    /// # Errors
    /// When the request fails or the body is not JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// When the request fails or the body is not JSON.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// `POST path` with no body.
    ///
    /// # Errors
    /// When the request fails or the response is not JSON.
    pub async fn post_empty(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// `DELETE path`.
    ///
    /// # Errors
    /// When the request fails or the body is not JSON.
    pub async fn delete(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// The `/metrics` text.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The value of one exposition line `name{labels}` (exact label text, `""` for none).
    ///
    /// # Errors
    /// When the request fails.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let text = self.metrics().await?;
        Ok(metric_value(&text, series))
    }

    /// The agent record from `/ops/agents/{id}`, if known.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn agent(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let (status, body) = self.get(&format!("/ops/agents/{id}")).await?;
        Ok((status == 200).then_some(body))
    }

    /// Raw sample timestamps (ms) of a range selector, by the series' `host` label.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn raw_timestamps(
        &self,
        selector: &str,
    ) -> anyhow::Result<BTreeMap<String, Vec<i64>>> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", urlencode(selector)))
            .await?;
        anyhow::ensure!(status == 200, "query failed: {body}");
        let mut out = BTreeMap::new();
        for series in body["data"]["result"].as_array().into_iter().flatten() {
            let host = series["metric"]["host"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let times = series["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pair| pair[0].as_f64())
                .map(|seconds| (seconds * 1000.0).round() as i64)
                .collect();
            out.insert(host, times);
        }
        Ok(out)
    }
}

/// The value of the exposition line for `series` (`name{a="b"}` exactly as rendered, or a bare name).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Percent-encodes a query parameter.
pub fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
