//! The man pages and shell completions, generated from the command line's own
//! definition (`backchannel manual OUT`, a hidden subcommand that `make deb`
//! runs), so that they cannot drift from `--help`.
//!
//! clap_mangen writes NAME, SYNOPSIS, DESCRIPTION, OPTIONS and the
//! subcommands; each page then gets EXIT STATUS, ENVIRONMENT (every variable
//! of its options, from clap, and the few read apart from them), FILES and
//! SIGNALS from [`extra`], before VERSION.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

/// Subcommands left out of the manual: `bench` runs a program the package
/// does not ship (`make bench` builds it from the source tree).
const UNPACKAGED: &[&str] = &["bench"];

/// Write `OUT/man/*.1` (one page per subcommand) and
/// `OUT/completions/{backchannel.bash,_backchannel,backchannel.fish}`.
pub fn write(command: clap::Command, out: &Path) -> anyhow::Result<()> {
    let mut command = command.disable_help_subcommand(true);
    for name in UNPACKAGED {
        command = command.mut_subcommand(name, |sub| sub.hide(true));
    }
    command.build();
    let man = out.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    write_pages(&command, &man)?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;
    let name = command.get_name().to_owned();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, &name, &completions).with_context(
            || {
                format!(
                    "cannot write the {shell} completion into {}",
                    completions.display()
                )
            },
        )?;
    }
    Ok(())
}

/// One page for `command` and one for each of its visible subcommands.
fn write_pages(command: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let man = Man::new(command.clone());
    let path = dir.join(man.get_filename());
    let page = page(&man, command)
        .with_context(|| format!("cannot render the man page {}", path.display()))?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}

/// The page: clap_mangen's sections, ours, then VERSION.
fn page(man: &Man, command: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if command.get_subcommands().any(|sub| !sub.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    out.write_all(sections(command).to_roff().as_bytes())?;
    if command.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// EXIT STATUS, ENVIRONMENT, FILES and SIGNALS of one page.
fn sections(command: &clap::Command) -> Roff {
    let name = command.get_display_name().unwrap_or(command.get_name());
    let extra = extra(name);
    let mut roff = Roff::new();
    if !extra.exit.is_empty() {
        roff.control("SH", ["EXIT STATUS"]);
        for (status, what) in extra.exit {
            entry(&mut roff, vec![bold(*status)], what);
        }
    }
    let variables = variables(command);
    if !variables.is_empty() || !extra.environment.is_empty() {
        roff.control("SH", ["ENVIRONMENT"]);
        for (variable, what) in variables {
            entry(&mut roff, vec![bold(variable)], &what);
        }
        for (variable, what) in extra.environment {
            entry(&mut roff, vec![bold(*variable)], what);
        }
    }
    if !extra.files.is_empty() {
        roff.control("SH", ["FILES"]);
        for (file, what) in extra.files {
            entry(&mut roff, vec![italic(*file)], what);
        }
    }
    if !extra.signals.is_empty() {
        roff.control("SH", ["SIGNALS"]);
        for (signal, what) in extra.signals {
            entry(&mut roff, vec![bold(*signal)], what);
        }
    }
    roff
}

/// A tagged paragraph: the tag on its line, the text indented below.
fn entry(roff: &mut Roff, tag: Vec<Inline>, text: &str) {
    roff.control("TP", []);
    roff.text(tag);
    roff.text([roman(text)]);
}

/// Every variable of the command's visible options, with the option it sets
/// and the first line of its help.
fn variables(command: &clap::Command) -> Vec<(String, String)> {
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| {
            let variable = arg.get_env()?.to_string_lossy().into_owned();
            let help = arg
                .get_help()
                .map(|help| help.to_string())
                .unwrap_or_default();
            let first = help.lines().next().unwrap_or_default().trim().to_owned();
            let option = arg
                .get_long()
                .map(|long| format!("--{long}"))
                .unwrap_or_else(|| arg.get_id().to_string());
            Some((variable, format!("As {option}: {first}")))
        })
        .collect()
}

/// What a page says beyond clap's definition.
#[derive(Default)]
struct Extra {
    exit: &'static [(&'static str, &'static str)],
    environment: &'static [(&'static str, &'static str)],
    files: &'static [(&'static str, &'static str)],
    signals: &'static [(&'static str, &'static str)],
}

const USAGE_ERROR: (&str, &str) = (
    "2",
    "The command line or a variable is not valid (clap's usage error).",
);

const LOGGING: &[(&str, &str)] = &[
    (
        "RUST_LOG",
        "The log level, in tracing's filter syntax (info, debug, backchannel=debug,info); default info.",
    ),
    (
        "BACKCHANNEL_LOG_FORMAT",
        "json for one JSON object per line on standard error (the packaged units set it); text otherwise.",
    ),
    (
        "NO_COLOR",
        "Set and not empty: text logs carry no colour codes (they carry none anyway when standard error is not a terminal).",
    ),
];

const SERVE_ENVIRONMENT: &[(&str, &str)] = &[
    (
        "NOTIFY_SOCKET",
        "Set by systemd for Type=notify: the broker sends READY=1 there once its start-up checks passed and it listens.",
    ),
    (
        "PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY",
        "libpq's TLS settings, used when DATABASE_URL (or BACKCHANNEL_DIRECT_DATABASE_URL) does not say; the URL wins.",
    ),
    (
        "HOSTNAME",
        "Part of the instance's name in /v1/listener and the logs, when set.",
    ),
    (
        "RUST_LOG, BACKCHANNEL_LOG_FORMAT, NO_COLOR",
        "Logging, as in backchannel(1).",
    ),
];

const PACKAGE_DOCS: (&str, &str) = (
    "/usr/share/doc/backchannel/docs/",
    "The documentation: deploy.md (install, upgrade, backup, removal), configuration.md (every setting), postgres.md (for the DBA).",
);

fn extra(page: &str) -> Extra {
    match page {
        "backchannel" => Extra {
            exit: &[
                ("0", "Success."),
                (
                    "1",
                    "An error, written to standard error (each subcommand's page says more).",
                ),
                USAGE_ERROR,
            ],
            environment: LOGGING,
            files: &[
                (
                    "/etc/backchannel/",
                    "The settings and token files of the packaged services (backchannel-serve(1), backchannel-agent(1)).",
                ),
                PACKAGE_DOCS,
            ],
            signals: &[],
        },
        "backchannel-serve" => Extra {
            exit: &[
                (
                    "0",
                    "Stopped by SIGTERM or SIGINT, after answering its waiting requests; or, with --check, every check passed.",
                ),
                (
                    "1",
                    "Did not start, or stopped on an error: settings, token files, the database, its schema or its rights (the message says which, and what to run); or, with --check, a check failed.",
                ),
                USAGE_ERROR,
            ],
            environment: SERVE_ENVIRONMENT,
            files: &[
                (
                    "/etc/backchannel/backchannel.env",
                    "This site's settings for backchannel.service, and the shared ones of backchannel@NAME.service (KEY='value' lines; created once by the package from /usr/share/backchannel/env/backchannel.env, never changed by an upgrade).",
                ),
                (
                    "/etc/backchannel/NAME.env",
                    "The settings of backchannel@NAME.service, over those of backchannel.env.",
                ),
                (
                    "/etc/backchannel/submitter.tokens, /etc/backchannel/listener.tokens",
                    "The token files (one token per line, root:backchannel, mode 0640), read at start and on SIGHUP.",
                ),
                (
                    "/usr/lib/systemd/system/backchannel.service, /usr/lib/systemd/system/backchannel@.service",
                    "The units; their defaults are Environment= lines (systemctl cat backchannel).",
                ),
                (
                    "/usr/share/backchannel/sql/",
                    "The migrations (NNN_*.sql) and the runtime role's grants (grants.sql); backchannel migrate --print prints the same SQL from the binary.",
                ),
                PACKAGE_DOCS,
            ],
            signals: &[
                (
                    "SIGTERM, SIGINT",
                    "Stop: refuse new requests, end the stream (another instance takes it over), answer waiting requests with 202 and their job's state, exit within BACKCHANNEL_SHUTDOWN_GRACE.",
                ),
                (
                    "SIGHUP",
                    "Read the token files again and apply them (systemctl reload backchannel); a file that breaks a rule is not applied and the tokens in force stay.",
                ),
            ],
        },
        "backchannel-agent" => Extra {
            exit: &[
                (
                    "0",
                    "Stopped by SIGTERM or SIGINT, after its jobs in flight.",
                ),
                (
                    "1",
                    "Did not start: its settings or its token file (the message says which). Losing the broker is not an error: the agent reconnects by itself.",
                ),
                USAGE_ERROR,
            ],
            environment: &[
                ("HOSTNAME", "Part of the default listener id, when set."),
                (
                    "RUST_LOG, BACKCHANNEL_LOG_FORMAT, NO_COLOR",
                    "Logging, as in backchannel(1).",
                ),
            ],
            files: &[
                (
                    "/etc/backchannel/agent.env",
                    "This site's settings for backchannel-agent.service (KEY='value' lines; created once by the package from /usr/share/backchannel/env/agent.env, never changed by an upgrade).",
                ),
                (
                    "/etc/backchannel/listener.token",
                    "The listener token (root:backchannel, mode 0640), read at start.",
                ),
                (
                    "/usr/lib/systemd/system/backchannel-agent.service",
                    "The unit; its defaults are Environment= lines (systemctl cat backchannel-agent).",
                ),
                PACKAGE_DOCS,
            ],
            signals: &[(
                "SIGTERM, SIGINT",
                "Stop: close the stream, finish the jobs in flight and post their answers within BACKCHANNEL_SHUTDOWN_GRACE, exit.",
            )],
        },
        "backchannel-migrate" => Extra {
            exit: &[
                (
                    "0",
                    "Applied (or nothing was pending), printed, or granted.",
                ),
                (
                    "1",
                    "An error: the database, the role's rights, or a migration that failed (nothing of it is kept: one transaction).",
                ),
                USAGE_ERROR,
            ],
            environment: &[
                (
                    "PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY",
                    "libpq's TLS settings, used when DATABASE_URL does not say; the URL wins.",
                ),
                (
                    "RUST_LOG, BACKCHANNEL_LOG_FORMAT, NO_COLOR",
                    "Logging, as in backchannel(1).",
                ),
            ],
            files: &[
                (
                    "/usr/share/backchannel/sql/",
                    "The same migrations as files, and grants.sql (psql -v role=ROLE -f grants.sql).",
                ),
                PACKAGE_DOCS,
            ],
            signals: &[],
        },
        "backchannel-submit" => Extra {
            exit: &[
                ("0", "The job is done; it is printed as JSON."),
                (
                    "1",
                    "The job is not done (still pending or delivered after the wait, or failed, expired, cancelled: it is printed as JSON), or the broker refused the submit or could not be reached.",
                ),
                USAGE_ERROR,
            ],
            environment: &[(
                "RUST_LOG, BACKCHANNEL_LOG_FORMAT, NO_COLOR",
                "Logging, as in backchannel(1).",
            )],
            files: &[],
            signals: &[],
        },
        "backchannel-status" => Extra {
            exit: &[
                ("0", "Printed; with --check: OK."),
                (
                    "1",
                    "The broker could not be reached or refused the token; with --check: WARNING.",
                ),
                (
                    "2",
                    "With --check: CRITICAL (no listener, or the oldest pending job past --crit-pending-age). Also clap's usage error, with or without --check.",
                ),
                (
                    "3",
                    "With --check: UNKNOWN (the broker unreachable, the token refused).",
                ),
            ],
            environment: &[(
                "RUST_LOG, BACKCHANNEL_LOG_FORMAT, NO_COLOR",
                "Logging, as in backchannel(1).",
            )],
            files: &[],
            signals: &[],
        },
        "backchannel-keys" | "backchannel-keys-new" | "backchannel-keys-id" => Extra {
            exit: &[
                ("0", "Written (keys new) or printed (keys id)."),
                (
                    "1",
                    "A file could not be read or written, would be overwritten, or is not a key file of the four kinds (the message says which).",
                ),
                USAGE_ERROR,
            ],
            environment: &[(
                "RUST_LOG, BACKCHANNEL_LOG_FORMAT, NO_COLOR",
                "Logging, as in backchannel(1).",
            )],
            files: &[],
            signals: &[],
        },
        _ => Extra::default(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    /// The pages `write` makes, in a folder of the test's own (`test`).
    fn pages(test: &str) -> Vec<(String, String)> {
        let dir =
            std::env::temp_dir().join(format!("backchannel-manual-{}-{test}", std::process::id()));
        write(Cli::command(), &dir).unwrap();
        let mut pages: Vec<(String, String)> = std::fs::read_dir(dir.join("man"))
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        pages.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        pages
    }

    /// The pages the package ships, each with the sections an operator looks
    /// for, in man-pages(7)'s order (VERSION last, on the main page).
    #[test]
    fn every_page_has_exit_status_environment_and_its_files_and_signals() {
        let pages = pages("sections");
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "backchannel-agent.1",
                "backchannel-keys-id.1",
                "backchannel-keys-new.1",
                "backchannel-keys.1",
                "backchannel-migrate.1",
                "backchannel-serve.1",
                "backchannel-status.1",
                "backchannel-submit.1",
                "backchannel.1"
            ]
        );
        for (name, page) in &pages {
            let mut wanted = vec![".SH OPTIONS", ".SH \"EXIT STATUS\"", ".SH ENVIRONMENT"];
            if [
                "backchannel.1",
                "backchannel-serve.1",
                "backchannel-agent.1",
            ]
            .contains(&name.as_str())
            {
                wanted.push(".SH FILES");
            }
            if ["backchannel-serve.1", "backchannel-agent.1"].contains(&name.as_str()) {
                wanted.push(".SH SIGNALS");
            }
            if name == "backchannel.1" {
                wanted.push(".SH VERSION"); // subcommands have no version of their own
            }
            let found: Vec<usize> = wanted
                .iter()
                .map(|heading| {
                    page.find(&format!("{heading}\n"))
                        .unwrap_or_else(|| panic!("{name}: no {heading}\n{page}"))
                })
                .collect();
            assert!(found.is_sorted(), "{name}: {wanted:?} out of order\n{page}");
        }
    }

    /// ENVIRONMENT lists every variable of the subcommand's options, so that
    /// it cannot drift from --help; and serve's names SIGHUP and the files.
    #[test]
    fn the_environment_section_lists_every_variable_of_the_options() {
        let command = Cli::command();
        let pages = pages("environment");
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            let file = format!("backchannel-{}.1", sub.get_name());
            let Some((_, page)) = pages.iter().find(|(name, _)| *name == file) else {
                assert!(UNPACKAGED.contains(&sub.get_name()), "no page {file}");
                continue;
            };
            let environment = &page[page.find(".SH ENVIRONMENT\n").unwrap()..];
            for arg in sub.get_arguments().filter(|arg| !arg.is_hide_set()) {
                if let Some(variable) = arg.get_env() {
                    let variable = variable.to_string_lossy().replace('_', "\\_");
                    let tag = format!("\\fB{variable}\\fR");
                    assert!(
                        environment.contains(&tag)
                            || environment.contains(&tag.replace("\\_", "_")),
                        "{file}: ENVIRONMENT lacks {variable}\n{environment}"
                    );
                }
            }
        }
        let serve = &pages
            .iter()
            .find(|(name, _)| name == "backchannel-serve.1")
            .unwrap()
            .1;
        for needle in [
            "SIGHUP",
            "NOTIFY_SOCKET",
            "/etc/backchannel/backchannel.env",
            "/usr/share/backchannel/sql/",
        ] {
            assert!(
                serve.contains(needle),
                "backchannel-serve.1 lacks {needle}\n{serve}"
            );
        }
    }
}
