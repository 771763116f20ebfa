//! The operator console: static files from `console/`, built into the binary so a venue needs no
//! other web server and no internet. Served on the control port **without** the token, since the
//! page must load to ask for it; every API call the page then makes carries the token.
//!
//! `GET /` is the page; its modules, stylesheet and the vendored hls.js live under `/console/`.

use axum::{
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// One file of the console.
struct Asset {
    /// Where it is served.
    path: &'static str,
    content_type: &'static str,
    /// The page is revalidated on every load; scripts and styles are cached briefly, so a new
    /// binary's console reaches browsers within a minute.
    cache_control: &'static str,
    body: &'static [u8],
}

const PAGE: &str = "no-cache";
const SHORT: &str = "max-age=60";
const JS: &str = "text/javascript; charset=utf-8";

/// A file under `console/`, served at `/console/<file>`, cached briefly.
macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        Asset {
            path: concat!("/console/", $file),
            content_type: $content_type,
            cache_control: SHORT,
            body: include_bytes!(concat!("../console/", $file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        cache_control: PAGE,
        body: include_bytes!("../console/index.html"),
    },
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("event.js", JS),
    asset!("player.js", JS),
    asset!("ui.js", JS),
    asset!("vendor/hls.min.js", JS),
    asset!("vendor/hls.js-LICENSE", "text/plain; charset=utf-8"),
];

/// What the page may do: scripts and styles only from here, thumbnails and video as blob URLs,
/// fetches to any origin (the program playlist is on the playback port), no framing (a one-click
/// switch must not be clickjacked).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
     worker-src 'self' blob:; connect-src 'self' http: https: ws: wss:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The console's routes; merge them with the API router (which keeps its token check).
pub fn router() -> Router {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, asset.cache_control),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_page_and_its_files_without_a_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router()).await });
        let client = reqwest::Client::new();
        for asset in ASSETS {
            let response = client
                .get(format!("http://{addr}{}", asset.path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", asset.path);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(headers[header::CACHE_CONTROL], asset.cache_control);
            assert_eq!(
                response.bytes().await.unwrap(),
                asset.body,
                "{}",
                asset.path
            );
        }
        server.abort();
    }

    #[test]
    fn every_module_the_console_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        let ours = ASSETS
            .iter()
            .filter(|a| a.content_type == JS && !a.path.contains("/vendor/"));
        for asset in ours {
            let text = std::str::from_utf8(asset.body).unwrap();
            for import in text.split("from './").skip(1) {
                let file = import.split('\'').next().unwrap();
                let path = format!("/console/{file}");
                assert!(
                    served.contains(&path.as_str()),
                    "{} imports {path}",
                    asset.path
                );
            }
        }
    }
}
