//! `udstrace generate DIR` (hidden, for packages): the manual page (section 8: udstrace is
//! run by administrators, as tcpdump) and the bash, zsh and fish completions, from the same
//! clap definitions as `--help`, and Wireshark's Lua plugin.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

use crate::error::Error;

/// Writes `udstrace.8`, `udstrace.bash`, `_udstrace` (zsh), `udstrace.fish` and
/// `udstrace.lua` into `dir`; the files written.
pub(super) fn write(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let failed = |path: &Path, source: std::io::Error| Error::Output {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let mut written = Vec::new();
    let man = dir.join("udstrace.8");
    let mut page = Vec::new();
    clap_mangen::Man::new(super::args::command())
        .section("8")
        .render(&mut page)
        .map_err(|e| failed(&man, e))?;
    std::fs::write(&man, page).map_err(|e| failed(&man, e))?;
    written.push(man);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = visible(&super::args::command());
        let path = clap_complete::generate_to(shell, &mut cmd, "udstrace", dir)
            .map_err(|e| failed(dir, e))?;
        written.push(path);
    }
    let lua = dir.join("udstrace.lua");
    std::fs::write(&lua, super::extcap::lua_plugin()).map_err(|e| failed(&lua, e))?;
    written.push(lua);
    Ok(written)
}

/// `cmd` without what `--help` hides (Wireshark's extcap options, this command): the
/// completion generators offer everything they are given.
fn visible(cmd: &clap::Command) -> clap::Command {
    let args = cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned();
    let subcommands = cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned();
    let mut out = clap::Command::new("udstrace")
        .args(args)
        .subcommands(subcommands);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn manual_and_completions_name_every_option() {
        let dir = std::env::temp_dir().join(format!("udstrace-generate-{}", std::process::id()));
        let written = super::write(&dir).unwrap();
        assert_eq!(written.len(), 5);
        let man = std::fs::read_to_string(dir.join("udstrace.8")).unwrap();
        assert!(man.contains(".TH udstrace 8"));
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{}", &man[..40]);
        for option in ["relinquish\\-privileges", "file\\-size", "\\-\\-recv"] {
            assert!(man.contains(option), "{option}");
        }
        assert!(
            !man.contains("extcap\\-interfaces"),
            "hidden options stay hidden"
        );
        let bash = std::fs::read_to_string(dir.join("udstrace.bash")).unwrap();
        assert!(bash.contains("--relinquish-privileges") && bash.contains("complete -F"));
        let fish = std::fs::read_to_string(dir.join("udstrace.fish")).unwrap();
        assert!(fish.contains("complete -c udstrace") && !fish.contains("generate"));
        assert!(!bash.contains("extcap-interfaces") && !fish.contains("extcap-interfaces"));
        let zsh = std::fs::read_to_string(dir.join("_udstrace")).unwrap();
        assert!(zsh.starts_with("#compdef udstrace"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
