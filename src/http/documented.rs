//! The gate in front of the router: a request reaches a route only if its
//! method and path are in [`ROUTES`], the table that a test
//! holds equal to `docs/openapi.yaml`. A route added to the router but not to
//! the table is never served, so the document cannot silently fall behind.

use warp::Filter;
use warp::http::{Method, StatusCode};
use warp::path::FullPath;

use super::error::ApiError;

/// Every route the API answers: (method, path), `{id}` standing for one path
/// segment. Requests for anything else are refused before they reach a route
/// ([`only`]), and a test holds this table equal to the paths of
/// `docs/openapi.yaml`: a route must be in both to be served.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("DELETE", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/result"),
    ("GET", "/v1/stream"),
    ("GET", "/v1/listener"),
    ("GET", "/v1/stats"),
    ("POST", "/v1/channels/{channel}/jobs"),
    ("GET", "/v1/channels/{channel}/stream"),
    ("GET", "/v1/channels/{channel}/listener"),
    ("GET", "/v1/channels/{channel}/stats"),
    ("POST", "/v1/hop"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// Does `path` fit `template`? A `{name}` segment stands for any one non-empty segment.
fn fits(template: &str, path: &str) -> bool {
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// The template of the documented route that `path` fits, for logs and
/// metrics (whatever the method).
pub fn route(path: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .find(|(_, template)| fits(template, path))
        .map(|(_, template)| *template)
}

/// `Ok` for a documented method and path; else 404 (unknown path) or 405
/// (known path, other method; `Allow` lists the documented ones).
pub fn check(method: &Method, path: &str) -> Result<(), ApiError> {
    let mut allowed = ROUTES
        .iter()
        .filter(|(_, template)| fits(template, path))
        .map(|(m, _)| *m)
        .peekable();
    if allowed.peek().is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ));
    }
    let allowed: Vec<&str> = allowed.collect();
    if allowed.contains(&method.as_str()) {
        return Ok(());
    }
    let mut error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this path",
    );
    error.allow = Some(allowed.join(", "));
    Err(error)
}

/// A filter passing only documented routes.
pub fn only() -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and_then(|method: Method, path: FullPath| {
            std::future::ready(check(&method, path.as_str()).map_err(warp::reject::custom))
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fit_exactly() {
        assert!(fits("/v1/jobs/{id}", "/v1/jobs/42"));
        assert!(!fits("/v1/jobs/{id}", "/v1/jobs/"));
        assert!(!fits("/v1/jobs/{id}", "/v1/jobs/42/"));
        assert!(!fits("/v1/jobs", "/v1/jobs/"));
        assert!(!fits("/v1/jobs", "/v1//jobs"));
        assert!(fits("/healthz", "/healthz"));
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        assert!(check(&Method::POST, "/v1/jobs").is_ok());
        assert_eq!(check(&Method::GET, "/nope").unwrap_err().status, 404);
        let e = check(&Method::PUT, "/v1/jobs/7").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow.as_deref(), Some("GET, DELETE"));
    }
}
