//! One HTTP/1 request to a server under test, read whole (feature `http`).
//!
//! ```no_run
//! # async fn demo() {
//! use staunch_test::http::{client, send};
//!
//! let http = client();
//! let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
//! let reply = send(&http, "POST", "http://127.0.0.1:8080/v1/chat/completions", &[], body).await;
//! assert_eq!(reply.status, 200);
//! assert_eq!(reply.json()["object"], "chat.completion");
//! assert_eq!(reply.header("content-type"), "application/json");
//! # }
//! ```

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A plain-HTTP client with a connection pool.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new [`HttpClient`] (call it inside a tokio runtime).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer, read to its end.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Its status code.
    pub status: u16,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body as text (invalid UTF-8 replaced).
    pub text: String,
}

impl Reply {
    /// Its body as JSON, or `null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    /// The value of header `name`, or `""` when it is absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `method url` with `headers` and a JSON `body` (content type
/// `application/json`) and reads the whole answer.
///
/// # Panics
///
/// When the request cannot be built, sent or read: a test's failure.
pub async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body.into()))
        .expect("a valid request");
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"))
        .to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}
