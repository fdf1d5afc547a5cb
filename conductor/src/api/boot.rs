//! `GET /boot/…`: what iPXE fetches (chain script, per-MAC scripts, staged deploy kernel and
//! ramdisk). Unauthenticated like the agent endpoints, read-only, and confined to the boot
//! directory by [`ferrite_netboot::BootFiles::serve`].

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ferrite_netboot::Served;
use tokio_util::io::ReaderStream;

use super::Shared;

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

pub async fn file(State(state): State<Shared>, Path(rel): Path<String>) -> Response {
    let Some(files) = &state.engine.boot_files else {
        return text(
            StatusCode::NOT_FOUND,
            "this conductor serves no boot files\n".into(),
        );
    };
    match files.serve(&rel) {
        Served::Script(s) => text(StatusCode::OK, s),
        Served::File(path) => match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let len = f.metadata().await.map(|m| m.len()).ok();
                let mut r = Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/octet-stream");
                if let Some(len) = len {
                    r = r.header(header::CONTENT_LENGTH, len);
                }
                r.body(Body::from_stream(ReaderStream::with_capacity(
                    f,
                    256 * 1024,
                )))
                .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
            }
            Err(_) => text(StatusCode::NOT_FOUND, format!("no boot file {rel:?}\n")),
        },
        Served::NotFound => text(StatusCode::NOT_FOUND, format!("no boot file {rel:?}\n")),
        Served::Refused(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    }
}
