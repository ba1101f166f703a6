//! [`ClientError`]: what went wrong talking to the API, with the server's problem document.

use wharf_core::api::{FieldError, Problem};

/// What went wrong talking to the API.
///
/// An answer the server gave is [`ClientError::Api`] with its RFC 9457 problem document
/// ([`Problem`]: `type` as `kind`, `title`, `status`, `detail`, `errors: [{field, message}]`).
/// [`ClientError::problem`], [`ClientError::status`] and [`ClientError::field_errors`] reach
/// into it without a `match`:
///
/// ```no_run
/// # async fn demo(wharf: &wharf_client::Client) {
/// match wharf.create_user_at("Trading partner Carol", "carol").await {
///     Ok(created) => println!("{}", created.user.username),
///     Err(error) if error.status() == Some(404) => println!("no such bucket"),
///     Err(error) => {
///         // "… (HTTP 400): homeDirectory: must be an absolute path starting with '/'"
///         eprintln!("{error}");
///         for field in error.field_errors() {
///             eprintln!("{} is wrong: {}", field.field, field.message);
///         }
///     }
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid API URL '{0}'")]
    Url(String),
    /// An id or name that cannot be a URL path segment (empty, `.` or `..`); nothing was sent.
    #[error("'{0}' is not a valid id")]
    BadId(String),
    /// The server could not be reached (after the retries), the connection broke, or a reply
    /// was not the JSON expected.
    #[error("cannot reach the Wharf API: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error; `problem` says why (and which fields).
    #[error("{}", describe(problem))]
    Api { status: u16, problem: Problem },
    /// The server answered with an error that is not a problem document (a proxy in between,
    /// say); `body` is its beginning.
    #[error("unexpected response from the Wharf API (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
    /// A local file to upload could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The HTTP status of an answer (`None` when there was none: transport errors, bad ids).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            ClientError::Http(e) => e.status().map(|s| s.as_u16()),
            ClientError::Url(_) | ClientError::BadId(_) | ClientError::File { .. } => None,
        }
    }

    /// The server's problem document, if the server answered with one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The problem document, owned; the error itself when it is not one.
    pub fn into_problem(self) -> Result<Problem, ClientError> {
        match self {
            ClientError::Api { problem, .. } => Ok(problem),
            other => Err(other),
        }
    }

    /// The fields the server named as wrong (`homeDirectory`, `passwordOptions.length`,
    /// `publicKeys[1]`, …); empty when the error is not about the request's content.
    pub fn field_errors(&self) -> &[FieldError] {
        self.problem().map_or(&[], |p| p.errors.as_slice())
    }

    /// The server's message about `field` (its JSON path, as in [`Self::field_errors`]).
    pub fn field_error(&self, field: &str) -> Option<&str> {
        self.field_errors()
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    /// The problem's `type` (a stable URI naming the kind of problem), if there is one.
    pub fn problem_type(&self) -> Option<&str> {
        self.problem().map(|p| p.kind.as_str())
    }

    /// `404 Not Found`: no such user, bucket, object, webhook, …
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// `409 Conflict`: the name is taken, or the resource is in a state that forbids this.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

/// One line for the problem (title, status, detail), plus one per field unless the detail
/// already is that one field's message.
pub(crate) fn describe(problem: &Problem) -> String {
    let mut s = format!("{} (HTTP {})", problem.title, problem.status);
    let lines: Vec<String> = problem
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    // The server's detail of a validation problem is its field errors joined: show them once.
    if let Some(detail) = &problem.detail
        && *detail != lines.join("; ")
    {
        s.push_str(": ");
        s.push_str(detail);
    }
    match lines.as_slice() {
        [] => {}
        [line] if problem.detail.as_deref() == Some(line.as_str()) => {
            s.push_str(": ");
            s.push_str(line);
        }
        _ => {
            for line in &lines {
                s.push_str("\n  ");
                s.push_str(line);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(f: &str, m: &str) -> FieldError {
        FieldError {
            field: f.into(),
            message: m.into(),
        }
    }

    fn problem(detail: Option<&str>, errors: Vec<FieldError>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: "Validation failed".into(),
            status: 400,
            detail: detail.map(Into::into),
            errors,
        }
    }

    #[test]
    fn problems_show_each_field_once() {
        assert_eq!(
            describe(&problem(Some("url: bad"), vec![field("url", "bad")])),
            "Validation failed (HTTP 400): url: bad"
        );
        assert_eq!(
            describe(&problem(
                Some("url: bad; events: none"),
                vec![field("url", "bad"), field("events", "none")]
            )),
            "Validation failed (HTTP 400)\n  url: bad\n  events: none"
        );
        assert_eq!(
            describe(&problem(Some("no webhook 'x'"), vec![])),
            "Validation failed (HTTP 400): no webhook 'x'"
        );
    }

    #[test]
    fn helpers_reach_into_the_problem() {
        let error = ClientError::Api {
            status: 400,
            problem: problem(
                None,
                vec![field("homeDirectory", "must be absolute"), field("x", "y")],
            ),
        };
        assert_eq!(error.status(), Some(400));
        assert_eq!(error.problem_type(), Some("about:blank"));
        assert_eq!(error.field_errors().len(), 2);
        assert_eq!(error.field_error("homeDirectory"), Some("must be absolute"));
        assert_eq!(error.field_error("home"), None);
        assert!(!error.is_not_found());
        assert_eq!(error.into_problem().unwrap().errors.len(), 2);

        let error = ClientError::BadId("..".into());
        assert_eq!(error.status(), None);
        assert!(error.problem().is_none());
        assert!(error.field_errors().is_empty());
        assert!(error.into_problem().is_err());
    }
}
