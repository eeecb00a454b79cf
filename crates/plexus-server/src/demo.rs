//! The demo chat page that `plexus serve` shows at `/` in development mode: a newcomer opens the
//! server's address in a browser and sees channels, history, presence and recovery at work.
//!
//! The page (`assets/demo/`) is built on the TypeScript client; its compiled modules are
//! committed under `assets/demo/client/` and embedded here, so running the server needs no npm
//! step. `clients/typescript/scripts/sync-demo.mjs --check` (run by `scripts/test.sh`) fails when
//! that copy differs from a fresh build, and a test below fails when a file is not served.

use crate::assets::{Asset, CSS, HTML, JS, asset};
use axum::Router;
use axum::http::header;
use axum::routing::get;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const ASSETS: &[Asset] = &[
    asset!("demo", "index.html", HTML),
    asset!("demo", "app.js", JS),
    asset!("demo", "style.css", CSS),
    asset!("demo", "client/index.js", JS),
    asset!("demo", "client/client.js", JS),
    asset!("demo", "client/subscription.js", JS),
    asset!("demo", "client/codec.js", JS),
    asset!("demo", "client/codes.js", JS),
    asset!("demo", "client/errors.js", JS),
    asset!("demo", "client/emitter.js", JS),
    asset!("demo", "client/backoff.js", JS),
    asset!("demo", "client/types.js", JS),
    asset!("demo", "client/records.js", JS),
];

/// The compiled TypeScript client's modules (name under `client/`, body), which the admin
/// interface serves too.
pub(crate) fn client_files() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    ASSETS.iter().filter_map(|a| {
        a.path
            .strip_prefix("/demo/client/")
            .map(|name| (name, a.body))
    })
}

/// Where a browser finds the page of a server listening on `listen`: a wildcard address
/// (`0.0.0.0`, `::`) is not one to browse to, so it becomes the loopback address.
pub(crate) fn page_url(listen: SocketAddr) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/")
}

/// The demo's routes when `enabled` (development mode), none otherwise.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(enabled: bool) -> Router<S> {
    let mut router = Router::new();
    if !enabled {
        return router;
    }
    for asset in ASSETS {
        let headers = [
            (header::CONTENT_TYPE, asset.content_type),
            // Always revalidate: a rebuilt server serves its own page, never a cached one.
            (header::CACHE_CONTROL, "no-cache"),
        ];
        let page = get(move || async move { (headers, asset.body) });
        if asset.path == "/demo/index.html" {
            router = router.route("/", page.clone());
        }
        router = router.route(asset.path, page);
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }

    #[test]
    fn every_demo_file_is_served() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
        let mut on_disk = BTreeSet::new();
        files_under(&dir, "", &mut on_disk);
        let served: BTreeSet<String> = ASSETS
            .iter()
            .map(|a| a.path.strip_prefix("/demo/").unwrap().to_owned())
            .collect();
        assert_eq!(served, on_disk, "list every file of assets/demo in ASSETS");
    }

    #[test]
    fn the_page_url_is_one_a_browser_can_open() {
        let url = |addr: &str| page_url(addr.parse().unwrap());
        assert_eq!(url("127.0.0.1:8000"), "http://127.0.0.1:8000/");
        assert_eq!(url("0.0.0.0:8000"), "http://127.0.0.1:8000/");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/");
        assert_eq!(url("192.0.2.7:80"), "http://192.0.2.7:80/");
    }

    #[test]
    fn the_page_loads_the_client_from_the_served_paths() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(html.contains(r#"src="/demo/app.js""#));
        assert!(html.contains(r#"href="/demo/style.css""#));
        let app = std::str::from_utf8(ASSETS[1].body).unwrap();
        assert!(app.contains(r#"from "./client/index.js""#));
    }
}
