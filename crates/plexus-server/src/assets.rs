//! Files embedded in the binary and served as they are (the demo page, the admin interface).

/// One embedded file and the path it is served at.
pub(crate) struct Asset {
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

pub(crate) const HTML: &str = "text/html; charset=utf-8";
pub(crate) const JS: &str = "text/javascript; charset=utf-8";
pub(crate) const CSS: &str = "text/css; charset=utf-8";
pub(crate) const SVG: &str = "image/svg+xml";

/// `asset!("admin", "app.js", JS)`: `assets/admin/app.js`, served at `/admin/app.js`.
macro_rules! asset {
    ($dir:literal, $file:literal, $content_type:expr) => {
        $crate::assets::Asset {
            path: concat!("/", $dir, "/", $file),
            content_type: $content_type,
            body: include_bytes!(concat!("../assets/", $dir, "/", $file)),
        }
    };
}
pub(crate) use asset;
