//! Cgroup ids (what the kernel programs record of each sender) back to cgroup paths, the way
//! `/proc/PID/cgroup` writes them (`/docker/<id>`, `/system.slice/...`): a cgroup (v2) id is
//! the inode number of its directory in the cgroup2 file system.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::fds::unescape_octal;

/// Ids remembered before the table is emptied.
const MAX_IDS: usize = 16_384;

/// Directory levels walked below the cgroup2 root (Kubernetes nests four or five).
const MAX_DEPTH: usize = 12;

/// Time between two walks of the whole hierarchy for an id not seen yet.
const WALK_SPACING: Duration = Duration::from_millis(500);

/// Where the cgroup2 hierarchy is mounted, from a `mountinfo` text: `/sys/fs/cgroup` on a
/// unified system, `/sys/fs/cgroup/unified` on a hybrid one.
#[must_use]
pub(crate) fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPEROPTIONS`
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        let mut fields = before.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(unescape_octal(mount_point)))
    })
}

/// The path of a process's cgroup (v2) from its `/proc/PID/cgroup` text (the `0::` line).
#[must_use]
pub(crate) fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Cgroup ids to paths, remembered.
pub(crate) struct CgroupPaths {
    /// The cgroup2 mount; `None` when there is none (then nothing resolves).
    root: Option<PathBuf>,
    proc: PathBuf,
    paths: HashMap<u64, String>,
    last_walk: Option<Instant>,
}

impl CgroupPaths {
    /// Ids of this machine: the cgroup2 mount that `/proc/self/mountinfo` names.
    #[must_use]
    pub(crate) fn system() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::new(cgroup2_mount(&mountinfo), PathBuf::from("/proc"))
    }

    /// Ids of the cgroup2 hierarchy mounted at `root`, processes under `proc`.
    #[must_use]
    pub(crate) fn new(root: Option<PathBuf>, proc: PathBuf) -> Self {
        Self {
            root,
            proc,
            paths: HashMap::new(),
            last_walk: None,
        }
    }

    /// The path of cgroup `id`, which process `pid` was in: from the process's own cgroup
    /// file when it is still there and still in that cgroup, else from a walk of the
    /// hierarchy (at most every half second), else unknown.
    pub(crate) fn path(&mut self, id: u64, pid: u32) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.paths.contains_key(&id) {
            if self.paths.len() >= MAX_IDS {
                self.paths.clear();
            }
            let found = self.via_process(id, pid).or_else(|| self.via_walk(id));
            if let Some(path) = found {
                self.paths.insert(id, path);
            }
        }
        self.paths.get(&id).map(String::as_str)
    }

    /// The cgroup of `pid` if its directory is `id`.
    fn via_process(&self, id: u64, pid: u32) -> Option<String> {
        let root = self.root.as_ref()?;
        let text = fs::read_to_string(self.proc.join(pid.to_string()).join("cgroup")).ok()?;
        let path = unified_path(&text)?;
        let dir = root.join(path.trim_start_matches('/'));
        (fs::metadata(dir).ok()?.ino() == id).then(|| path.to_string())
    }

    /// Walks the hierarchy, remembering every directory's id; the path of `id` if found.
    fn via_walk(&mut self, id: u64) -> Option<String> {
        let root = self.root.clone()?;
        if self.last_walk.is_some_and(|t| t.elapsed() < WALK_SPACING) {
            return None;
        }
        self.last_walk = Some(Instant::now());
        let mut found = Vec::new();
        walk(&root, &root, 0, &mut found);
        let mut result = None;
        for (ino, path) in found {
            if ino == id {
                result = Some(path.clone());
            }
            if self.paths.len() < MAX_IDS {
                self.paths.insert(ino, path);
            }
        }
        result
    }
}

/// Every directory under `dir` (itself included) as (inode, path from `root` with a leading
/// `/`).
pub(crate) fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(u64, String)>) {
    let Ok(meta) = fs::metadata(dir) else {
        return;
    };
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    out.push((meta.ino(), format!("/{}", relative.display())));
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), depth + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A container's view: the hierarchy's root is its own cgroup, not the host's.
        let bind = "700 690 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(bind), None);
        let spaced = "1 1 0:1 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/my cgroup")));
        assert_eq!(cgroup2_mount(""), None);
    }

    #[test]
    fn unified_line_of_a_process() {
        let hybrid = "9:name=systemd:/\n8:pids:/docker/1a2b\n0::/docker/1a2b\n";
        assert_eq!(unified_path(hybrid), Some("/docker/1a2b"));
        assert_eq!(unified_path("5:memory:/x\n"), None);
    }

    /// A hierarchy of plain directories: ids are their inode numbers, found through the
    /// process's own file or by walking.
    #[test]
    fn ids_resolve_to_paths() {
        let base = std::env::temp_dir().join(format!("udstrace-cgroups-{}", std::process::id()));
        let root = base.join("cgroup");
        let proc = base.join("proc");
        fs::create_dir_all(root.join("docker/0123abcd")).unwrap();
        fs::create_dir_all(root.join("system.slice/ssh.service")).unwrap();
        fs::create_dir_all(proc.join("42")).unwrap();
        fs::write(proc.join("42/cgroup"), "0::/docker/0123abcd\n").unwrap();
        let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
        let mut paths = CgroupPaths::new(Some(root.clone()), proc.clone());
        assert_eq!(
            paths.path(ino("docker/0123abcd"), 42),
            Some("/docker/0123abcd")
        );
        // Process 7 is gone: the walk finds the directory.
        assert_eq!(
            paths.path(ino("system.slice/ssh.service"), 7),
            Some("/system.slice/ssh.service")
        );
        assert_eq!(paths.path(0, 42), None);
        // An id that is nowhere, right after a walk: unknown, without another walk.
        assert_eq!(paths.path(u64::MAX, 7), None);
        assert_eq!(CgroupPaths::new(None, proc).path(5, 42), None);
        fs::remove_dir_all(base).unwrap();
    }
}
