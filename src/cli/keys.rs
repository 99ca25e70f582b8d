//! `backchannel keys`: sealed/v1 key files for people (docs/sealed.md).
//!
//! - `keys new x25519|ed25519 --out PREFIX` writes `PREFIX.key` (PKCS#8,
//!   created 0600) and `PREFIX.pub` (SubjectPublicKeyInfo, 0644) in the PEM
//!   forms `openssl genpkey` and `openssl pkey -pubout` write, never over an
//!   existing file, and prints the new key's id;
//! - `keys id FILE` prints the key id of any of the four kinds of key file
//!   (a private key's id is its public half's).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::seal::{Algorithm, KeyFile, write_new_pair};

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Write a new key pair as PREFIX.key (private, mode 0600) and PREFIX.pub
    /// (public), as openssl writes them; never overwrites. Prints the key id.
    New {
        /// x25519: castellum's recipient key (the agent's --open-with);
        /// ed25519: a scheduler's signing key (the agent's --trust-signer
        /// takes its .pub).
        algorithm: KeyKind,
        /// The files' common prefix: PREFIX.key and PREFIX.pub.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the key id of a key file (private or public, X25519 or Ed25519).
    Id {
        /// A PEM key file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    X25519,
    Ed25519,
}

impl From<KeyKind> for Algorithm {
    fn from(kind: KeyKind) -> Algorithm {
        match kind {
            KeyKind::X25519 => Algorithm::X25519,
            KeyKind::Ed25519 => Algorithm::Ed25519,
        }
    }
}

/// Run `keys new` or `keys id`; returns what to print on stdout.
pub fn run(args: KeysArgs) -> anyhow::Result<String> {
    match args.command {
        KeysCommand::New { algorithm, out } => {
            let kid =
                write_new_pair(algorithm.into(), &out).context("cannot write the key pair")?;
            eprintln!(
                "wrote {prefix}.key (private: keep it, mode 0600) and {prefix}.pub (public: hand it out)",
                prefix = out.display()
            );
            Ok(kid.to_string())
        }
        KeysCommand::Id { file } => Ok(KeyFile::read(&file)?.kid().to_string()),
    }
}
