//! What a response carries for the access log (as extensions): the job it
//! is about and, for an error, its code. A leaf of `http`: the access log,
//! the errors and the handlers attach or read them, none through another.

/// The id of the job an answer carries (a job, or an error about one),
/// attached to the response so that the access line names it.
#[derive(Debug, Clone, Copy)]
pub struct JobId(pub i64);

/// The error code of an error answer, attached to the response so that the
/// access log counts refusals by reason.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);
