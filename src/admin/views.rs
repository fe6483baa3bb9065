//! Shared pieces of the admin pages: the layout every page extends, the error page, form
//! parsing, and plain-UTC time formatting (no time zone guessing on a security console).

use askama::Template;
use axum::extract::{FromRequest, Request};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::StatusCode;

use super::auth::Session;

/// What the base template needs: the page title, which nav entry is current, and the signed-in
/// user with the CSRF token for the sign-out form.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// `<title>` and `<h1>`.
    pub title: String,
    /// Nav key of the current page.
    pub nav: &'static str,
    /// Signed-in user, if any.
    pub user: Option<String>,
    /// Role of the signed-in user.
    pub role: &'static str,
    /// CSRF token for forms.
    pub csrf: String,
    /// May the user change things (admin role)?
    pub can_change: bool,
    /// The server's path under its origin (`Config::issuer_path`, `""` at the root): every link,
    /// form action and asset URL in the templates starts with it, so the pages work when the
    /// issuer has a path.
    pub base: String,
}

impl Layout {
    /// The layout of a page seen by `session`.
    pub fn new(title: impl Into<String>, nav: &'static str, session: &Session) -> Layout {
        Layout {
            title: title.into(),
            nav,
            user: Some(session.username.clone()),
            role: session.role.as_str(),
            csrf: session.csrf.clone(),
            can_change: session.can_change(),
            base: session.base_path.clone(),
        }
    }

    /// The layout of a page seen before sign-in, on a server whose path is `base`.
    pub fn anonymous(title: impl Into<String>, base: &str) -> Layout {
        Layout {
            title: title.into(),
            base: base.to_string(),
            ..Layout::default()
        }
    }
}

/// Renders a template to an HTML response (askama escapes every value).
pub fn render<T: Template>(template: &T) -> Response {
    render_with_status(StatusCode::OK, template)
}

/// Renders a template with a status code.
pub fn render_with_status<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "admin template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage {
    layout: Layout,
    message: String,
}

/// Why an admin request did not succeed; each becomes a page with the right status.
#[derive(Debug, Clone)]
pub enum AdminError {
    /// No valid session: go to the sign-in page.
    SignIn,
    /// 403 with a reason (CSRF failure, auditor trying to change, config-managed item).
    Forbidden(String),
    /// 404.
    NotFound,
    /// 400 with a reason.
    BadRequest(String),
    /// 429: too many failed sign-ins.
    TooManyAttempts,
    /// 503 with a reason: something the page depends on (the SSO identity provider) is not
    /// available right now.
    Unavailable(String),
    /// 500; the detail is logged, not shown.
    Internal(String),
}

impl From<crate::store::StoreError> for AdminError {
    fn from(error: crate::store::StoreError) -> Self {
        AdminError::Internal(error.to_string())
    }
}

impl From<crate::keys::KeyError> for AdminError {
    fn from(error: crate::keys::KeyError) -> Self {
        AdminError::Internal(error.to_string())
    }
}

/// An admin error on its way out, waiting for [`render_errors`]: its page links into the admin
/// page, and only the router knows the server's path (an extractor's rejection has no state).
#[derive(Clone)]
struct Unrendered(AdminError);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        response.extensions_mut().insert(Unrendered(self));
        response
    }
}

/// The layer on the admin routes that turns an [`AdminError`] into its page or redirect, with
/// the links of the server's path (`Config::issuer_path`).
pub async fn render_errors(
    axum::extract::State(state): axum::extract::State<crate::http::AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    match response.extensions_mut().remove::<Unrendered>() {
        Some(Unrendered(error)) => error.page(state.config.issuer_path()),
        None => response,
    }
}

impl AdminError {
    /// The page (or the redirect to sign-in) for this error on a server whose path is `base`.
    fn page(self, base: &str) -> Response {
        let (status, message) = match self {
            AdminError::SignIn => {
                return Redirect::to(&format!("{base}/admin/sign-in")).into_response();
            }
            AdminError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            AdminError::NotFound => (StatusCode::NOT_FOUND, "There is nothing here.".into()),
            AdminError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            AdminError::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in attempts from your address. Wait a few minutes and try again."
                    .into(),
            ),
            AdminError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
            AdminError::Internal(detail) => {
                tracing::error!(%detail, "admin page error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on the server; nothing was changed. The server log has the details."
                        .into(),
                )
            }
        };
        let title = match status {
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            _ => "Error",
        };
        render_with_status(
            status,
            &ErrorPage {
                layout: Layout::anonymous(title, base),
                message,
            },
        )
    }
}

/// A urlencoded form body, kept as ordered pairs so repeated and unknown fields are harmless.
#[derive(Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// The trimmed value of `name`, `None` when empty.
    pub fn optional(&self, name: &str) -> Option<String> {
        let value = self.get(name).trim();
        (!value.is_empty()).then(|| value.to_string())
    }

    /// True if a checkbox named `name` was sent.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(key, _)| key == name)
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = AdminError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| {
                AdminError::BadRequest("The form could not be read (too large?).".into())
            })?;
        Ok(FormData(
            form_urlencoded::parse(&bytes)
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        ))
    }
}

/// Formats unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Formats an optional time, "—" when absent.
pub fn format_optional_time(secs: Option<i64>) -> String {
    secs.map_or_else(|| "—".to_string(), format_time)
}

/// A duration in words ("3 d 4 h", "12 min", "40 s").
pub fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 86_400 {
        format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600)
    } else if secs >= 3600 {
        format!("{} h {} min", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD HH:MM[:SS]` (UTC), or plain unix
/// seconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, time.trim_end_matches('Z')),
        None => (text, "00:00"),
    };
    let mut date_parts = date.split('-').map(str::parse::<i64>);
    let year = date_parts.next()?.ok()?;
    let month = date_parts.next()?.ok()?;
    let day = date_parts.next()?.ok()?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut time_parts = time.split(':').map(str::parse::<i64>);
    let hour = time_parts.next()?.ok()?;
    let minute = time_parts.next()?.ok()?;
    let second = time_parts.next().transpose().ok()?.unwrap_or(0);
    if !(0..24).contains(&hour) || !(0..60).contains(&minute) || !(0..61).contains(&second) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(parse_time("2023-11-14T22:13"), Some(1_700_000_000 - 20));
        assert_eq!(parse_time("2023-11-14 22:13:20"), Some(1_700_000_000));
        assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2024-13-01"), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(40), "40 s");
        assert_eq!(format_duration(720), "12 min");
        assert_eq!(format_duration(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }
}
