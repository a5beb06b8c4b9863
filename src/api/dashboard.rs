//! `GET /`: the cluster dashboard, one page of HTML, CSS and JavaScript embedded in the binary
//! (no asset from anywhere else). It polls `/v1/cluster`, `/v1/models`, `/metrics` and
//! `/v1/events` every second, loads and unloads models, and streams a completion; it asks for
//! the cluster key when the node answers 401 and keeps it in the browser's session storage.

use actix_web::HttpResponse;

/// The dashboard. The page needs no key; what it reads does.
#[utoipa::path(get, path = "/", tag = "meta", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub(crate) async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(include_str!("assets/dashboard.html"))
}
