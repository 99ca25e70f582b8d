//! `backchannel agent`: against a real broker and a real HTTP handler.

mod forward;
mod handler;
mod health;
mod sealed;
mod stream;
