//! Page templates (askama, compiled in) and the small formatting helpers they share.

use std::collections::BTreeMap;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use wharf_core::api::Problem;

use crate::session::Session;

/// The console's version, in asset URLs so that a new binary busts caches.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The frame around every page: navigation and the sign-out form.
pub(crate) struct Chrome {
    /// The highlighted navigation entry: `users`, `files`, `webhooks`, `events` or empty.
    pub section: &'static str,
    pub signed_in: bool,
    pub csrf: String,
    pub version: &'static str,
    /// A one-line confirmation of the last change (from the redirect's query).
    pub notice: String,
}

impl Chrome {
    pub(crate) fn new(section: &'static str, session: &Session) -> Chrome {
        Chrome {
            section,
            signed_in: true,
            csrf: session.csrf.clone(),
            version: VERSION,
            notice: String::new(),
        }
    }

    pub(crate) fn signed_out() -> Chrome {
        Chrome {
            section: "",
            signed_in: false,
            csrf: String::new(),
            version: VERSION,
            notice: String::new(),
        }
    }

    pub(crate) fn with_notice(mut self, notice: String) -> Chrome {
        self.notice = notice;
        self
    }
}

/// Renders a page; a template error (a bug) is logged and shown as a plain 500.
pub(crate) fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered.",
            )
                .into_response()
        }
    }
}

/// What went wrong with a form: messages by field, and one for the whole form.
#[derive(Default)]
pub(crate) struct FormErrors {
    fields: BTreeMap<String, String>,
    pub general: String,
}

impl FormErrors {
    /// The problem's field errors go next to the fields this form has; the rest (and the
    /// problem's own title and detail when no field is named) at the top of the form.
    pub(crate) fn from_problem(problem: Problem, form_fields: &[&str]) -> FormErrors {
        let mut errors = FormErrors::default();
        let mut rest = Vec::new();
        for error in problem.errors {
            // `publicKeys[1]`, `filter.prefix`: the form field is the first segment.
            let field = error
                .field
                .split(['[', '.'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let nested = error.field.strip_prefix(field.as_str()).unwrap_or_default();
            let (target, message) = if let Some(f) = form_fields
                .iter()
                .find(|f| **f == error.field || **f == field)
            {
                let message = if nested.is_empty() || **f == error.field {
                    error.message
                } else {
                    format!("{}: {}", nested.trim_start_matches('.'), error.message)
                };
                ((*f).to_owned(), message)
            } else {
                rest.push(format!("{}: {}", error.field, error.message));
                continue;
            };
            errors
                .fields
                .entry(target)
                .and_modify(|m| {
                    m.push_str("; ");
                    m.push_str(&message);
                })
                .or_insert(message);
        }
        if errors.fields.is_empty() || !rest.is_empty() {
            let mut general = problem.title;
            if let Some(detail) = problem.detail.filter(|d| !d.is_empty()) {
                general = format!("{general}: {detail}");
            }
            if !rest.is_empty() {
                general = format!("{general} ({})", rest.join("; "));
            }
            errors.general = general;
        }
        errors
    }

    pub(crate) fn general(message: impl Into<String>) -> FormErrors {
        FormErrors {
            fields: BTreeMap::new(),
            general: message.into(),
        }
    }

    /// The message for `field`, if any.
    pub(crate) fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    pub(crate) fn any(&self) -> bool {
        !self.fields.is_empty() || !self.general.is_empty()
    }
}

/// `2026-11-28 19:55 UTC`, or `never`.
pub(crate) fn time(t: Option<DateTime<Utc>>, never: &str) -> String {
    t.map_or_else(
        || never.to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// `1.5 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub(crate) struct SignInPage {
    pub title: String,
    pub chrome: Chrome,
    pub next: String,
    pub error: String,
    /// Plain HTTP to another machine: the key would cross the network in clear.
    pub insecure: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub title: String,
    pub chrome: Chrome,
    pub status: u16,
    pub heading: String,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::api::FieldError;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn problems_go_next_to_their_fields() {
        let problem = Problem {
            kind: "validation".into(),
            title: "Invalid request".into(),
            status: 400,
            detail: Some("2 fields".into()),
            errors: vec![
                FieldError {
                    field: "homeDirectory".into(),
                    message: "must be absolute".into(),
                },
                FieldError {
                    field: "publicKeys[1]".into(),
                    message: "not an OpenSSH public key".into(),
                },
            ],
        };
        let errors = FormErrors::from_problem(problem, &["homeDirectory", "publicKeys"]);
        assert_eq!(errors.get("homeDirectory"), Some("must be absolute"));
        assert_eq!(
            errors.get("publicKeys"),
            Some("[1]: not an OpenSSH public key")
        );
        assert!(errors.general.is_empty());

        let problem = Problem {
            kind: "conflict".into(),
            title: "Conflict".into(),
            status: 409,
            detail: Some("user 'ALICE' exists already".into()),
            errors: vec![],
        };
        let errors = FormErrors::from_problem(problem, &["username"]);
        assert_eq!(errors.general, "Conflict: user 'ALICE' exists already");
    }
}
