//! The pages hold to the binary and to each other: docs/configuration.md names
//! every variable the command line reads and none it does not, and every
//! relative link of the pages points at a file that exists (and, with an
//! `#anchor`, at a heading of it, by GitHub's rules). No database: the help
//! text of the built binary and the files of the repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The subcommands whose `--help` lists the variables.
const SUBCOMMANDS: [&str; 5] = ["serve", "agent", "migrate", "submit", "status"];

/// Variables the program reads that `--help` does not show, each documented in
/// docs/configuration.md, and why it is not in `--help`.
const OUTSIDE_HELP: &[(&str, &str)] = &[
    (
        "RUST_LOG",
        "the log filter, read by tracing-subscriber's EnvFilter",
    ),
    (
        "BACKCHANNEL_LOG_FORMAT",
        "read by the logging set-up before any subcommand parses its arguments",
    ),
    (
        "NO_COLOR",
        "read by the logging set-up: colour only on a terminal, and not when set",
    ),
    (
        "BACKCHANNEL_TOKEN",
        "the deprecated name of the agent's, submit's and status' token: a hidden argument",
    ),
    (
        "BACKCHANNEL_TOKEN_FILE",
        "the deprecated name of BACKCHANNEL_LISTENER_TOKEN_FILE: a hidden argument",
    ),
    (
        "PGSSLMODE",
        "libpq's TLS variables, read by the connection string's parser when the URL does not say",
    ),
    ("PGSSLROOTCERT", "as PGSSLMODE"),
    ("PGSSLCERT", "as PGSSLMODE"),
    ("PGSSLKEY", "as PGSSLMODE"),
    (
        "HTTPS_PROXY",
        "the proxy variables, honoured by the agent's HTTP client (reqwest)",
    ),
    ("HTTP_PROXY", "as HTTPS_PROXY"),
    ("NO_PROXY", "as HTTPS_PROXY"),
    (
        "HOSTNAME",
        "a fallback for the default instance id and listener id",
    ),
    (
        "NOTIFY_SOCKET",
        "set by systemd for Type=notify units, read by serve to send READY=1",
    ),
];

/// The pages whose relative links must resolve.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut pages = vec![
        root.join("README.md"),
        root.join("bench/README.md"),
        root.join("clients/python/README.md"),
    ];
    pages.extend(docs_pages("md"));
    pages
}

/// The files of docs/ with the extension `ext`, sorted.
fn docs_pages(ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The long help of `backchannel <subcommand>`, with an empty environment so
/// that no value of the caller's shows up in it.
fn help(subcommand: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .args([subcommand, "--help"])
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "backchannel {subcommand} --help failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the help is UTF-8")
}

/// Every `NAME` of `[env: NAME]` or `[env: NAME=value]` in a help text.
fn env_names(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            let end = rest.find(['=', ']']).expect("an [env: ...] closes");
            rest[..end].trim().to_owned()
        })
        .collect()
}

/// Words of `text` that name one of our variables: runs of `A-Z 0-9 _`
/// starting with `BACKCHANNEL_` or ending with `DATABASE_URL`.
fn variables_named(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| word.starts_with("BACKCHANNEL_") || word.ends_with("DATABASE_URL"))
        .map(str::to_owned)
        .collect()
}

/// The variables of every subcommand's `--help`, and those read outside it.
fn known_variables() -> BTreeSet<String> {
    variables_in_help()
        .into_iter()
        .chain(OUTSIDE_HELP.iter().map(|(name, _)| name.to_string()))
        .collect()
}

/// The variables of every subcommand's `--help`.
fn variables_in_help() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for subcommand in SUBCOMMANDS {
        let names = env_names(&help(subcommand));
        assert!(
            !names.is_empty(),
            "no [env: ...] found in `backchannel {subcommand} --help`: has the help's format changed?"
        );
        all.extend(names);
    }
    all
}

#[test]
fn configuration_page_lists_every_variable_of_the_command_line() {
    let in_help = variables_in_help();
    for expected in ["DATABASE_URL", "BACKCHANNEL_BIND", "BACKCHANNEL_SERVER"] {
        assert!(in_help.contains(expected), "{expected} not found in --help");
    }
    let words = words(&read(&Path::new(ROOT).join("docs/configuration.md")));
    let missing: BTreeSet<String> = known_variables()
        .into_iter()
        .filter(|name| !words.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {missing:?}"
    );
}

/// Every word of `text` made of `A-Z 0-9 _`.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn configuration_page_names_no_variable_the_binary_does_not_read() {
    let known = known_variables();
    let path = Path::new(ROOT).join("docs/configuration.md");
    let unknown: Vec<String> = variables_named(&read(&path))
        .into_iter()
        .filter(|name| !known.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md names variables the binary does not read: {unknown:?}"
    );
}

#[test]
fn no_page_names_a_variable_the_binary_does_not_read() {
    let known = known_variables();
    // The Python client's page names Django settings (`BACKCHANNEL`,
    // `BACKCHANNEL_CASTELLUM`) and its test runner's variables; it is left out.
    let root = Path::new(ROOT);
    let mut checked: Vec<PathBuf> = vec![root.join("README.md"), root.join("bench/README.md")];
    checked.extend(docs_pages("md"));
    let mut unknown = Vec::new();
    for page in &checked {
        for name in variables_named(&read(page)) {
            if !known.contains(&name) {
                unknown.push(format!("{}: {name}", relative(page)));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "pages name variables the binary does not read: {unknown:#?}"
    );
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(marker)) => fence = Some(marker),
            (Some(open), Some(marker)) if open == marker => fence = None,
            (None, None) => lines.push(line),
            _ => {}
        }
    }
    lines
}

/// A line without its inline code spans (`` `...` ``).
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The targets of the links of a Markdown text: inline links and images
/// (`[text](target "title")`) and reference definitions (`[name]: target`),
/// outside code.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if let Some(end) = trimmed.find("]:") {
                targets.push(destination(&trimmed[end + 2..]));
                continue;
            }
        }
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(destination(&rest[..end]));
            rest = &rest[end..];
        }
    }
    targets
}

/// A link's destination from what follows `](` or `]:`: `<with spaces>`, or
/// up to the first blank (a title may follow).
fn destination(text: &str) -> String {
    let text = text.trim_start();
    match text.strip_prefix('<') {
        Some(angled) => angled.split('>').next().unwrap_or("").to_owned(),
        None => text.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// GitHub's anchor of a heading's text: the text as rendered (link targets
/// and inline markup dropped), lower case, every character but letters,
/// digits, spaces, `-` and `_` removed, spaces turned into `-`.
fn github_anchor(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // [text](target) renders as text.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's ATX headings, with GitHub's `-1`, `-2`
/// suffixes for repeated ones.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in prose_lines(text) {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let trimmed = line.trim_start_matches(' ');
        let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
        if indent > 3 || !(1..=6).contains(&hashes) {
            continue;
        }
        let after = &trimmed[hashes..];
        if !(after.is_empty() || after.starts_with([' ', '\t'])) {
            continue;
        }
        let mut heading = after.trim();
        // A closing sequence of #s after a space is not part of the text.
        let unclosed = heading.trim_end_matches('#');
        if unclosed.is_empty() || unclosed.ends_with([' ', '\t']) {
            heading = unclosed.trim_end();
        }
        let base = github_anchor(heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// What is wrong with one link target of `page`, if anything.
fn broken(page: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link".into());
    }
    let external = ["http://", "https://", "mailto:"];
    if external.iter().any(|scheme| target.starts_with(scheme)) {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    if path.starts_with('/') {
        return Some(format!(
            "{target}: an absolute path (links must be relative)"
        ));
    }
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().expect("a page has a folder").join(path)
    };
    if !file.exists() {
        return Some(format!("{target}: {} does not exist", relative(&file)));
    }
    let anchor = anchor?;
    if file.extension().is_none_or(|e| e != "md") {
        return Some(format!(
            "{target}: an anchor into a file that is not Markdown"
        ));
    }
    if anchors(&read(&file)).contains(anchor) {
        None
    } else {
        Some(format!(
            "{target}: {} has no heading with the anchor #{anchor}",
            relative(&file)
        ))
    }
}

#[test]
fn every_relative_link_of_the_pages_points_somewhere() {
    let mut problems = Vec::new();
    let mut links = 0;
    for page in pages() {
        for target in link_targets(&read(&page)) {
            links += 1;
            if let Some(problem) = broken(&page, &target) {
                problems.push(format!("{}: {problem}", relative(&page)));
            }
        }
    }
    assert!(
        links > 50,
        "only {links} links found: is the parser broken?"
    );
    assert!(problems.is_empty(), "broken links: {problems:#?}");
}

#[test]
fn the_index_lists_every_page_of_docs() {
    let index = read(&Path::new(ROOT).join("docs/README.md"));
    let linked: BTreeSet<String> = link_targets(&index).into_iter().collect();
    let mut pages = docs_pages("md");
    pages.extend(docs_pages("yaml"));
    let unlisted: Vec<String> = pages
        .iter()
        .map(|page| page.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "README.md" && !linked.contains(name))
        .collect();
    assert!(
        unlisted.is_empty(),
        "docs/README.md does not list {unlisted:?}"
    );
}

#[test]
fn the_readme_is_a_front_page() {
    let readme = read(&Path::new(ROOT).join("README.md"));
    assert!(
        readme.len() <= 16 * 1024,
        "README.md is {} bytes: keep it a front page of at most 16 KiB, and move detail to docs/",
        readme.len()
    );
    for command in ["make run", "make test", "make bench"] {
        assert!(
            readme.contains(command),
            "README.md does not show `{command}`"
        );
    }
    assert!(
        readme.contains("(docs/README.md)"),
        "README.md does not link the index of the docs"
    );
}

#[test]
fn anchors_follow_githubs_rules() {
    let text = "# Title\n## The DBA's settings\n## A monitoring plugin: `status --check`\n\
                ```sh\n# not a heading\n```\n## Title\n### [Linked](x.md) heading ###\n";
    let found = anchors(text);
    let expected: BTreeSet<String> = [
        "title",
        "the-dbas-settings",
        "a-monitoring-plugin-status---check",
        "title-1",
        "linked-heading",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(found, expected);
    assert_eq!(
        link_targets(
            "see [a](b.md#c) and `[d](e.md)`, [f](<g h.md> \"t\")\n[r]: s.md\n```\n[x](y)\n```"
        ),
        ["b.md#c", "g h.md", "s.md"]
    );
}
