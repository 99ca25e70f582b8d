//! `backchannel agent`: against a real broker and a real HTTP handler.

mod forward;
mod health;
mod sealed;
mod stream;
