//! Turns `docs/openapi.yaml` into JSON at build time (`$OUT_DIR/openapi.json`,
//! served at `/openapi.json` by `http::openapi`).
//!
//! Converting here keeps the YAML parser out of the binary: the parser that
//! serde_norway wraps is a transpiled libyaml, which Debian counts as an
//! embedded copy of a system library (lintian's `embedded-library`). The
//! binary only parses JSON. tests/it/openapi.rs still parses the YAML itself
//! (serde_norway is a dev-dependency too) and compares it with what is served.

use std::path::Path;
use std::{env, fs};

const SOURCE: &str = "docs/openapi.yaml";

fn main() {
    println!("cargo::rerun-if-changed={SOURCE}");
    let text = fs::read_to_string(SOURCE).unwrap_or_else(|e| panic!("reading {SOURCE}: {e}"));
    let document: serde_json::Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{SOURCE} is not valid YAML: {e}"));
    let json = serde_json::to_string(&document).expect("a JSON value serialises");
    let out = Path::new(&env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.json");
    fs::write(&out, json).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
