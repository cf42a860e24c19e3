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

/// Time between two walks of the whole hierarchy for an id not seen yet: ten times what the
/// last walk took, within these bounds. A container that sent once and exited (its cgroup
/// removed tens of milliseconds later) is only named if a walk finds its directory first,
/// while a stream of ids that resolve nowhere must not keep udstrace walking.
const MIN_WALK_SPACING: Duration = Duration::from_millis(20);
const MAX_WALK_SPACING: Duration = Duration::from_millis(500);

/// The cgroup2 mount points of a `mountinfo` text, in its order: `/sys/fs/cgroup` on a
/// unified system, `/sys/fs/cgroup/unified` on a hybrid one, and whatever a container was
/// given. Which of them shows the whole hierarchy the text cannot say: its root field is
/// written relative to the reader's cgroup namespace (`/` for a container's own cgroup,
/// `/../..` for the host's hierarchy bind-mounted into it).
#[must_use]
pub(crate) fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPEROPTIONS`
            let (before, after) = line.split_once(" - ")?;
            let fstype = after.split_whitespace().next()?;
            let mount_point = before.split_whitespace().nth(4)?;
            (fstype == "cgroup2").then(|| PathBuf::from(unescape_octal(mount_point)))
        })
        .collect()
}

/// Whether `dir` is the root of the cgroup2 hierarchy: a cgroup2 directory (it has
/// `cgroup.controllers`) whose id, its inode number, is the root cgroup's, 1. A cgroup
/// namespace's root, or a bind mount of a container's own cgroup, is not.
fn is_hierarchy_root(dir: &Path) -> bool {
    dir.join("cgroup.controllers").is_file() && fs::metadata(dir).is_ok_and(|m| m.ino() == 1)
}

/// Where this machine's cgroup2 hierarchy is seen whole: the first of its cgroup2 mounts
/// (`/proc/self/mountinfo`), then `sys/fs/cgroup` and `sys/fs/cgroup/unified` under
/// `host_root` (where the host's file system is seen: `/`, or `/host` in a container), that is
/// the hierarchy's root. None may be (a container given only its own cgroup).
#[must_use]
pub(crate) fn hierarchy_root(host_root: &Path) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut candidates = cgroup2_mounts(&mountinfo);
    candidates.push(host_root.join("sys/fs/cgroup"));
    candidates.push(host_root.join("sys/fs/cgroup/unified"));
    candidates.into_iter().find(|dir| is_hierarchy_root(dir))
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
    walk_spacing: Duration,
}

impl CgroupPaths {
    /// Ids of this machine: the first of its cgroup2 mounts (`/proc/self/mountinfo`), then
    /// `sys/fs/cgroup` and `sys/fs/cgroup/unified` under `host_root` (where the host's file
    /// system is seen: `/`, or `/host` in a container), that shows the whole
    /// hierarchy. None may: then no id resolves.
    #[must_use]
    pub(crate) fn system(host_root: &Path) -> Self {
        Self::new(hierarchy_root(host_root), PathBuf::from("/proc"))
    }

    /// Ids of the cgroup2 hierarchy mounted at `root`, processes under `proc`.
    #[must_use]
    pub(crate) fn new(root: Option<PathBuf>, proc: PathBuf) -> Self {
        Self {
            root,
            proc,
            paths: HashMap::new(),
            last_walk: None,
            walk_spacing: MIN_WALK_SPACING,
        }
    }

    /// The path of cgroup `id`, which process `pid` was in: from the process's own cgroup
    /// file when it is still there and still in that cgroup, else from a walk of the
    /// hierarchy (spaced by ten times what the last one took, 20 to 500 ms), else unknown.
    pub(crate) fn path(&mut self, id: u64, pid: u32) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.paths.contains_key(&id) {
            let found = self.via_process(id, pid).or_else(|| self.via_walk(id));
            if let Some(path) = found {
                self.learn(id, path);
            }
        }
        self.paths.get(&id).map(String::as_str)
    }

    /// Learns that cgroup `id` is at `path` (from the root of the hierarchy).
    /// The table is bounded: full, it is emptied first.
    pub(crate) fn learn(&mut self, id: u64, path: String) {
        if id == 0 {
            return;
        }
        if self.paths.len() >= MAX_IDS {
            self.paths = HashMap::new();
        }
        self.paths.insert(id, path);
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
        if self
            .last_walk
            .is_some_and(|t| t.elapsed() < self.walk_spacing)
        {
            return None;
        }
        let start = Instant::now();
        self.last_walk = Some(start);
        let mut found = Vec::new();
        walk(&root, &root, 0, &mut found);
        self.walk_spacing = (start.elapsed() * 10).clamp(MIN_WALK_SPACING, MAX_WALK_SPACING);
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
    fn lists_the_cgroup2_mounts() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mounts(hybrid),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mounts(unified), [PathBuf::from("/sys/fs/cgroup")]);
        // A container in its own cgroup namespace: its own cgroup, and the host's hierarchy
        // bind-mounted (the root fields say nothing certain about which is which).
        let container = "700 690 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n\
                         701 690 0:26 /../.. /host/sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mounts(container),
            [
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/host/sys/fs/cgroup")
            ]
        );
        let spaced = "1 1 0:1 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mounts(spaced), [PathBuf::from("/mnt/my cgroup")]);
        assert!(cgroup2_mounts("").is_empty());
    }

    /// Only the hierarchy's root has id 1: a directory that looks like a cgroup is not it,
    /// and neither is a directory that is no cgroup.
    #[test]
    fn the_hierarchy_root_is_cgroup_1() {
        let dir = std::env::temp_dir().join(format!("udstrace-root-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert!(!is_hierarchy_root(&dir));
        assert!(!is_hierarchy_root(Path::new("/")));
        fs::remove_dir_all(dir).unwrap();
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
