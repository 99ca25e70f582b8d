//! `backchannel agent`: against a real broker and a real HTTP handler.

mod stream;
