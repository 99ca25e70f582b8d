//! The HTTP contract: docs/PROTOCOL.md and docs/openapi.yaml, endpoint by
//! endpoint, as a client sees it.

mod answer;
mod channels;
mod errors;
mod idle;
mod limits;
mod openapi;
mod payload;
mod round_trip;
mod sealed;
mod stream;
mod submit;
mod wait;
