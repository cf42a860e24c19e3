//! Wireshark's extcap interface: Wireshark and tshark list udstrace as a capture interface,
//! ask for its options, and run it with `--capture --fifo PIPE`; udstrace writes pcapng into
//! the pipe until Wireshark stops it with SIGTERM. Also the `extcap install` command that
//! links udstrace into Wireshark's extcap folder and installs the Lua plugin.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use super::{args::ExtcapArgs, stdout_error, Failure};
use crate::error::Error;

/// The one interface udstrace offers.
pub const INTERFACE: &str = "udstrace";

/// The Lua plugin that turns packet comments into `udstrace.*` fields.
pub const LUA_PLUGIN: &str = include_str!("../../lua/udstrace.lua");

/// `--extcap-interfaces`.
pub fn interfaces(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "extcap {{version={}}}{{display=udstrace: Unix domain sockets}}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(
        out,
        "interface {{value={INTERFACE}}}{{display=Unix domain sockets (udstrace)}}"
    )
}

/// `--extcap-interface udstrace --extcap-dlts`.
pub fn dlts(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "dlt {{number=101}}{{name=RAW}}{{display=Unix socket messages as synthesised IPv6 (raw IP)}}")
}

/// `--extcap-interface udstrace --extcap-config`: the options shown in Wireshark's dialog.
/// Each `call` is a udstrace option, so Wireshark passes them straight through.
pub fn config(out: &mut impl Write) -> std::io::Result<()> {
    let args = [
        "arg {number=0}{call=--pid}{display=Process IDs}{type=string}\
         {tooltip=Capture only these processes (space or comma separated); empty: all}{group=Filter}",
        "arg {number=1}{call=--comm}{display=Command name}{type=string}\
         {tooltip=Capture only processes with this command name}{group=Filter}",
        "arg {number=2}{call=--path}{display=Socket path}{type=string}\
         {tooltip=Capture only sockets with this name at either end: a path, @abstract, or a glob}{group=Filter}",
        "arg {number=3}{call=--type}{display=Socket type}{type=selector}{group=Filter}",
        "arg {number=4}{call=--snaplen}{display=Snap length}{type=unsigned}{range=0,2147483647}\
         {default=0}{tooltip=Payload bytes kept per message; 0: the default, 4 MiB}{group=Capture}",
        "arg {number=5}{call=--backend}{display=Kernel backend}{type=selector}{group=Capture}",
        "arg {number=6}{call=--decode}{display=Decode as}{type=string}\
         {tooltip=PATH=PROTOCOL: decode sockets named PATH as http, pgsql, x11 or a port number}{group=Capture}",
        "arg {number=7}{call=--uid}{display=User}{type=string}\
         {tooltip=Capture only processes running as these users (names or numbers)}{group=Filter}",
        "arg {number=8}{call=--follow}{display=Follow children}{type=boolflag}\
         {tooltip=With process IDs: also the children they fork from now on}{group=Filter}",
        "arg {number=9}{call=--recv}{display=Receives too}{type=boolflag}\
         {tooltip=Also what processes read, as inbound packets}{group=Capture}",
    ];
    for a in args {
        writeln!(out, "{a}")?;
    }
    writeln!(
        out,
        "value {{arg=3}}{{value=}}{{display=any}}{{default=true}}"
    )?;
    for t in ["stream", "dgram", "seqpacket"] {
        writeln!(out, "value {{arg=3}}{{value={t}}}{{display={t}}}")?;
    }
    writeln!(
        out,
        "value {{arg=5}}{{value=auto}}{{display=auto}}{{default=true}}"
    )?;
    for b in ["fentry", "kprobe", "tracepoint"] {
        writeln!(out, "value {{arg=5}}{{value={b}}}{{display={b}}}")?;
    }
    Ok(())
}

/// After a fatal error in `--capture` mode: Wireshark waits on the pipe, so open and close it
/// to let it see the end (it then shows what we wrote on stderr).
pub fn release_fifo(fifo: &Path) {
    let _ = std::fs::OpenOptions::new().write(true).open(fifo);
}

/// Wireshark's folders, as `tshark -G folders` reports them (honours `$HOME`).
fn folders() -> Result<Vec<(String, PathBuf)>, Error> {
    let out = Command::new("tshark")
        .args(["-G", "folders"])
        .output()
        .map_err(|e| {
            Error::Install(format!(
                "cannot run tshark to find Wireshark's folders: {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Install("tshark -G folders failed".into()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), PathBuf::from(v.trim())))
        .collect())
}

fn folder(folders: &[(String, PathBuf)], key: &str) -> Result<PathBuf, Error> {
    folders
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| Error::Install(format!("tshark -G folders does not name the {key} folder")))
}

/// Links this executable into Wireshark's extcap folder and writes the Lua plugin; returns
/// what it installed, for the user.
pub fn install(global: bool) -> Result<Vec<String>, Error> {
    let folders = folders()?;
    let (extcap_dir, lua_dir) = if global {
        (
            folder(&folders, "Extcap path")?,
            folder(&folders, "Global Lua Plugins")?,
        )
    } else {
        (
            folder(&folders, "Personal configuration")?.join("extcap"),
            folder(&folders, "Personal Lua Plugins")?,
        )
    };
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::Install(format!("cannot find udstrace's own path: {e}")))?;
    let io = |what: &Path, e: std::io::Error| Error::Install(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(&extcap_dir).map_err(|e| io(&extcap_dir, e))?;
    let link = extcap_dir.join(INTERFACE);
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).map_err(|e| io(&link, e))?;
    }
    std::os::unix::fs::symlink(&exe, &link).map_err(|e| io(&link, e))?;
    std::fs::create_dir_all(&lua_dir).map_err(|e| io(&lua_dir, e))?;
    let plugin = lua_dir.join("udstrace.lua");
    std::fs::write(&plugin, LUA_PLUGIN).map_err(|e| io(&plugin, e))?;
    Ok(vec![
        format!("extcap interface: {} -> {}", link.display(), exe.display()),
        format!("Lua plugin (udstrace.* fields): {}", plugin.display()),
    ])
}

/// Wireshark's questions (`--extcap-interfaces`, `--extcap-dlts`, `--extcap-config`);
/// returns whether one was answered.
pub(super) fn query(ex: &ExtcapArgs) -> Result<bool, Failure> {
    let mut out = std::io::stdout();
    if ex.extcap_interfaces {
        interfaces(&mut out).map_err(stdout_error)?;
        return Ok(true);
    }
    if ex
        .extcap_interface
        .as_deref()
        .is_some_and(|i| i != INTERFACE)
    {
        return Err(Failure::Usage(format!(
            "unknown extcap interface `{}`",
            ex.extcap_interface.as_deref().unwrap_or("")
        )));
    }
    if ex.extcap_dlts {
        dlts(&mut out).map_err(stdout_error)?;
        return Ok(true);
    }
    if ex.extcap_config {
        config(&mut out).map_err(stdout_error)?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: fn(&mut Vec<u8>) -> std::io::Result<()>) -> String {
        let mut v = Vec::new();
        f(&mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn answers_follow_the_extcap_grammar() {
        let i = text(interfaces);
        assert!(i
            .lines()
            .any(|l| l == "interface {value=udstrace}{display=Unix domain sockets (udstrace)}"));
        assert!(text(dlts).starts_with("dlt {number=101}{name=RAW}"));
        let c = text(config);
        for line in c.lines() {
            assert!(
                line.starts_with("arg {number=") || line.starts_with("value {arg="),
                "{line}"
            );
            assert_eq!(
                line.matches('{').count(),
                line.matches('}').count(),
                "{line}"
            );
        }
        for call in [
            "--pid",
            "--comm",
            "--path",
            "--type",
            "--snaplen",
            "--backend",
            "--decode",
            "--uid",
            "--follow",
            "--recv",
        ] {
            assert!(c.contains(&format!("{{call={call}}}")), "{call}");
        }
    }
}
