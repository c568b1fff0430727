//! Typed calls, one file per service. Each takes the request message (or
//! the few values it needs) and returns the response message, unwrapped
//! from `tonic::Response`.

mod cells;
mod images;
mod instances;
mod observe;
mod runtime;
mod schedule;
