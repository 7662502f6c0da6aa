//! The web admin console (`console/`, built by Vite into `console/dist`),
//! served at `/` on the gateway's own port so the browser calls gRPC-Web on
//! the same origin: no CORS in the default set-up.
//!
//! Only `GET` and `HEAD` are answered here (every gRPC and gRPC-Web call is
//! a `POST` and passes through untouched):
//! * a file under the configured directory, read on each request (a rebuilt
//!   console is served without a restart);
//! * `assets/` holds Vite's content-hashed files: cached for a year,
//!   immutable; everything else (`index.html`) is revalidated every time;
//! * a path that names no file and has no extension is a client route of
//!   the single-page app: `index.html`; a missing file with an extension
//!   is 404;
//! * every answer carries a strict Content-Security-Policy (scripts, styles
//!   and calls from this origin only, no inline code, no framing).
//!
//! Paths are never percent-decoded, and a segment that is empty, `.`, `..`
//! or holds a backslash or NUL is refused, so nothing outside the directory
//! can be named.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::{BoxFuture, Either};

/// The policy of every console response. `connect-src 'self'`: the console
/// talks to this gateway only; `img-src data:` for inline SVG icons.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Hashed build output (Vite's `assets/`): never changes under its name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `index.html` and unhashed files: always asked again.
const REVALIDATE: &str = "no-cache";

/// The layer, when a console directory is configured.
pub fn layer(dir: Option<&Path>) -> Option<ConsoleLayer> {
    dir.map(|dir| ConsoleLayer {
        dir: Arc::new(dir.to_path_buf()),
    })
}

#[derive(Clone)]
pub struct ConsoleLayer {
    dir: Arc<PathBuf>,
}

impl<S> tower::Layer<S> for ConsoleLayer {
    type Service = Console<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Console {
            inner,
            dir: self.dir.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Console<S> {
    inner: S,
    dir: Arc<PathBuf>,
}

impl<S, B> tower::Service<http::Request<B>> for Console<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<BoxFuture<'static, Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.method().clone();
        if method != http::Method::GET && method != http::Method::HEAD {
            return Either::Right(self.inner.call(req));
        }
        let dir = self.dir.clone();
        let path = req.uri().path().to_owned();
        Either::Left(Box::pin(async move {
            let mut response = serve(&dir, &path).await;
            if method == http::Method::HEAD {
                *response.body_mut() = tonic::body::Body::empty();
            }
            Ok(response)
        }))
    }
}

/// The answer for `GET path`.
async fn serve(dir: &Path, path: &str) -> http::Response<tonic::body::Body> {
    let Some(segments) = segments(path) else {
        return plain(http::StatusCode::BAD_REQUEST, "bad path\n");
    };
    let file = segments.iter().fold(dir.to_path_buf(), |p, s| p.join(s));
    let immutable = segments.first().is_some_and(|s| *s == "assets");
    if !segments.is_empty()
        && let Ok(bytes) = read_file(&file).await
    {
        let cache = if immutable { IMMUTABLE } else { REVALIDATE };
        return file_response(bytes, content_type(&file), cache);
    }
    let names_a_file = segments.last().is_some_and(|s| s.contains('.'));
    if immutable || names_a_file {
        return plain(http::StatusCode::NOT_FOUND, "not found\n");
    }
    match read_file(&dir.join("index.html")).await {
        Ok(bytes) => file_response(bytes, "text/html; charset=utf-8", REVALIDATE),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "console index.html not readable");
            plain(
                http::StatusCode::NOT_FOUND,
                "the console is not built: npm --prefix console ci && npm --prefix console run build\n",
            )
        }
    }
}

/// The path's segments, or `None` when one could step outside the directory.
fn segments(path: &str) -> Option<Vec<&str>> {
    let trimmed = path.strip_prefix('/')?;
    let mut out = Vec::new();
    for (i, segment) in trimmed.split('/').enumerate() {
        // A trailing slash ("/users/") is the same client route.
        if segment.is_empty() && i + 1 == trimmed.split('/').count() {
            continue;
        }
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains(['\\', '\0'])
        {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

async fn read_file(path: &Path) -> std::io::Result<Bytes> {
    let meta = tokio::fs::metadata(path).await?;
    if !meta.is_file() {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    Ok(Bytes::from(tokio::fs::read(path).await?))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file_response(
    bytes: Bytes,
    content_type: &'static str,
    cache: &'static str,
) -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::new(Full(Some(bytes))));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static(cache),
    );
    secure(headers);
    response
}

fn plain(status: http::StatusCode, text: &'static str) -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::new(text.to_owned()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static(REVALIDATE),
    );
    secure(headers);
    response
}

fn secure(headers: &mut http::HeaderMap) {
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
}

/// A body of one chunk.
struct Full(Option<Bytes>);

impl http_body::Body for Full {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn segments_never_leave_the_directory() {
        assert_eq!(segments("/"), Some(vec![]));
        assert_eq!(segments("/users/"), Some(vec!["users"]));
        assert_eq!(segments("/assets/a.js"), Some(vec!["assets", "a.js"]));
        assert_eq!(segments("/../etc/passwd"), None);
        assert_eq!(segments("/a/./b"), None);
        assert_eq!(segments("//etc"), None);
        assert_eq!(segments("/a\\..\\b"), None);
        assert_eq!(segments("relative"), None);
    }
}
