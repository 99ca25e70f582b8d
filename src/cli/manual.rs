//! The man pages and shell completions, generated from the command line's own
//! definition (`backchannel manual OUT`, a hidden subcommand that `make deb`
//! runs), so that they cannot drift from `--help`.

use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;

/// Subcommands left out of the manual: `bench` runs a program the package
/// does not ship (`make bench` builds it from the source tree).
const UNPACKAGED: &[&str] = &["bench"];

/// Write `OUT/man/*.1` (one page per subcommand) and
/// `OUT/completions/{backchannel.bash,_backchannel,backchannel.fish}`.
pub fn write(command: clap::Command, out: &Path) -> anyhow::Result<()> {
    let mut command = command;
    for name in UNPACKAGED {
        command = command.mut_subcommand(name, |sub| sub.hide(true));
    }
    let man = out.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    clap_mangen::generate_to(command.clone(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
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
