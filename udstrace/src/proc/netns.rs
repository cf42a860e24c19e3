//! The machine's network namespaces, each once: those of every process (`/proc/*/ns/net`)
//! and those pinned by a bind mount under `/run/netns` (`ip netns`) and `/run/docker/netns`,
//! told apart by the namespace's inode; and running a function inside each of them on a
//! helper thread, so that udstrace's own threads never change namespace.

use std::{
    collections::HashSet,
    fs::{self, File},
    io,
    os::unix::fs::MetadataExt,
    path::Path,
};

use crate::sys;

/// Folders where tools keep namespaces alive by binding them to a file.
const PINNED: [&str; 2] = ["/run/netns", "/run/docker/netns"];

/// A network namespace other than udstrace's own, held open while it is used.
pub(crate) struct NetNamespace {
    /// Its inode number, as `readlink /proc/PID/ns/net` shows it (`net:[N]`).
    pub(crate) ino: u64,
    file: File,
}

/// The inode of udstrace's own network namespace (of the calling thread).
pub(crate) fn own() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Every network namespace of the machine but udstrace's own (`own`): the processes' in pid
/// order, then the pinned ones no process is in. A process whose namespace cannot be read
/// (it exited, or belongs to another user and udstrace is not root) is passed over.
pub(crate) fn others(own: u64) -> Vec<NetNamespace> {
    // Every namespace file lives on the one nsfs; a file under the pinned folders that is
    // not (a mount point left empty) is not a namespace.
    let nsfs = fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.dev())
        .ok();
    let mut seen = HashSet::from([own]);
    let mut out = Vec::new();
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let processes = pids
        .into_iter()
        .map(|pid| Path::new("/proc").join(pid.to_string()).join("ns/net"));
    let pinned = PINNED
        .iter()
        .flat_map(fs::read_dir)
        .flatten()
        .flatten()
        .map(|e| e.path());
    for path in processes.chain(pinned) {
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if seen.contains(&meta.ino()) || Some(meta.dev()) != nsfs {
            continue;
        }
        // Marked seen only once open: if this process has just exited, the next one in
        // the same namespace is tried.
        if let Ok(file) = File::open(&path) {
            seen.insert(meta.ino());
            out.push(NetNamespace {
                ino: meta.ino(),
                file,
            });
        }
    }
    out
}

/// `f` run inside each of `namespaces` (given its inode), in order, on one helper thread that enters them in
/// turn (a netlink socket belongs to the namespace of the thread that opens it) and ends
/// with the last. A namespace the thread cannot enter (udstrace lacks CAP_SYS_ADMIN) gives
/// the error instead.
pub(crate) fn in_each<T: Send>(
    namespaces: &[NetNamespace],
    f: impl Fn(u64) -> T + Sync,
) -> Vec<io::Result<T>> {
    if namespaces.is_empty() {
        return Vec::new();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                namespaces
                    .iter()
                    .map(|ns| sys::enter_net_namespace(&ns.file).map(|()| f(ns.ino)))
                    .collect()
            })
            .join()
            .unwrap_or_else(|_| {
                namespaces
                    .iter()
                    .map(|_| Err(io::Error::other("the namespace thread failed")))
                    .collect()
            })
    })
}

#[cfg(test)]
mod tests {
    use std::{
        process::{Command, Stdio},
        time::{Duration, Instant},
    };

    use super::*;

    /// A process in a network namespace of its own (`unshare --net`, as root) is found, the
    /// helper thread is really inside it, and this thread stays home.
    #[test]
    fn finds_and_enters_another_namespace() {
        let home = own().unwrap();
        let mut child = Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let link = format!("/proc/{}/ns/net", child.id());
        // The same pid runs unshare, then (in the new namespace) sleep.
        let start = Instant::now();
        let theirs = loop {
            let ino = fs::metadata(&link).map_or(home, |m| m.ino());
            if ino != home {
                break ino;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "unshare --net failed (not root?)"
            );
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        };
        let namespaces = others(home);
        assert!(namespaces.iter().all(|ns| ns.ino != home));
        let found: Vec<u64> = namespaces.iter().map(|ns| ns.ino).collect();
        assert_eq!(
            found.iter().filter(|&&n| n == theirs).count(),
            1,
            "{found:?}"
        );
        let inside: Vec<u64> = in_each(&namespaces, |_| own().unwrap())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(inside, found);
        assert_eq!(own().unwrap(), home);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
