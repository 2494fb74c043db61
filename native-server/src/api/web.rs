//! The browser page: `web-demo/` at `/` and the built web package (`target/wasm-pkg/web`) at
//! `/pkg/`, as static files for `GET` and `HEAD` (content types by extension,
//! `application/wasm` included; conditional and range requests as warp's file server answers
//! them).

use std::path::PathBuf;

use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::reply::{Reply, Response};
use warp::Filter;

/// Where the page's files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebFiles {
    /// The page (`index.html`, its scripts and styles), served at `/`.
    pub dir: Option<PathBuf>,
    /// The web package, served at `/pkg/`.
    pub pkg: Option<PathBuf>,
}

impl WebFiles {
    /// `web-demo` and `target/wasm-pkg/web` under the current directory, where they exist.
    pub fn from_current_dir() -> Self {
        let found = |p: &str| {
            let p = PathBuf::from(p);
            p.is_dir().then(|| p.canonicalize().unwrap_or(p))
        };
        Self {
            dir: found("web-demo").filter(|d| d.join("index.html").is_file()),
            pkg: found("target/wasm-pkg/web"),
        }
    }
}

fn no_cache(r: impl Reply) -> Response {
    let mut r = r.into_response();
    // The page and the package change with the server; revalidate each time (warp's file
    // server answers conditional requests with 304).
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

/// `GET`, or `HEAD` (the same headers, no body).
fn get_or_head() -> BoxedFilter<()> {
    warp::get().or(warp::head()).unify().boxed()
}

/// GET and HEAD filters for the page and the package (nothing matches where a directory is absent).
pub fn files(web: &WebFiles) -> Option<BoxedFilter<(Response,)>> {
    let mut filter: Option<BoxedFilter<(Response,)>> = None;
    let mut add = |f: BoxedFilter<(Response,)>| {
        filter = Some(match filter.take() {
            Some(prev) => prev.or(f).unify().boxed(),
            None => f,
        });
    };
    if let Some(pkg) = &web.pkg {
        add(get_or_head()
            .and(warp::path("pkg"))
            .and(warp::fs::dir(pkg.clone()))
            .map(no_cache)
            .boxed());
    }
    if let Some(dir) = &web.dir {
        add(get_or_head()
            .and(warp::path::end())
            .and(warp::fs::file(dir.join("index.html")))
            .map(no_cache)
            .boxed());
        add(get_or_head()
            .and(warp::fs::dir(dir.clone()))
            .map(no_cache)
            .boxed());
    }
    filter
}
