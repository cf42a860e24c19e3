//! `--container` and `--pod`: the cgroups of the containers a capture keeps.
//!
//! The kernel programs know each sender by its cgroup (v2) id, the inode number of its cgroup
//! directory. So the containers asked for are found in the cgroup2 hierarchy itself: every
//! directory is walked, the container its path names (`containers::container_of_cgroup_path`)
//! is described from its runtime's state files, and a directory whose container matches a
//! value, or that lies below one that does (systemd inside a container, a container nested
//! in it), gives its id. The walk is repeated during the capture, so that a container that
//! starts later (or is recreated under the same name) is taken in.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::{Path, PathBuf},
};

use super::{
    cgroups::{hierarchy_root, walk},
    containers::{container_of_cgroup_path, describe, ContainerInfo},
};

/// Shortest id prefix taken as an id (`docker` takes shorter ones; four hex digits keep a
/// short name from being read as one).
const MIN_PREFIX: usize = 4;

/// One `--container` or `--pod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// A container's name, full id or unique id prefix.
    Container(String),
    /// A Kubernetes pod: `namespace/name`.
    Pod(String),
}

impl Selector {
    /// A `--container` value.
    pub(crate) fn container(text: &str) -> Result<Self, String> {
        // Docker writes its names with a leading `/` in its own files.
        let name = text.strip_prefix('/').unwrap_or(text);
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(format!(
                "invalid --container `{text}`: expected a container's name or id"
            ));
        }
        Ok(Self::Container(name.to_string()))
    }

    /// A `--pod` value.
    pub(crate) fn pod(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self::Pod(text.to_string()))
            }
            _ => Err(format!("invalid --pod `{text}`: expected NAMESPACE/NAME")),
        }
    }

    /// What the value asks for, in words: `container NAME`, `pod NAMESPACE/NAME`.
    #[must_use]
    pub(crate) fn what(&self) -> String {
        match self {
            Self::Container(s) => format!("container {s}"),
            Self::Pod(s) => format!("pod {s}"),
        }
    }

    /// An id prefix this value could be.
    fn prefix(&self) -> Option<&str> {
        match self {
            Self::Container(s)
                if s.len() >= MIN_PREFIX
                    && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Some(s)
            }
            _ => None,
        }
    }

    /// Whether `info` is what this value names by name or full id (prefixes are counted
    /// over all containers first; see [`ContainerFilter::refresh`]).
    fn names(&self, info: &ContainerInfo) -> bool {
        match self {
            Self::Container(s) => info.name.as_deref() == Some(s) || info.id == *s,
            Self::Pod(s) => info.pod.as_deref() == Some(s),
        }
    }
}

/// A container a value matched for the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Appeared {
    /// What the value asked for (`Selector::what`).
    pub(crate) what: String,
    pub(crate) container: ContainerInfo,
}

/// What one walk found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Cgroup ids not handed out before.
    pub(crate) new_ids: Vec<u64>,
    /// Values that waited for a container and now have one.
    pub(crate) appeared: Vec<Appeared>,
    /// Id prefixes more than one container has (those containers are not taken), with the
    /// ids they match.
    pub(crate) ambiguous: Vec<(String, Vec<String>)>,
}

/// The containers `--container` and `--pod` ask for, and the cgroups found for them.
#[derive(Debug, Clone)]
pub(crate) struct ContainerFilter {
    selectors: Vec<Selector>,
    /// The cgroup2 hierarchy (None: not mounted).
    cgroup2: Option<PathBuf>,
    /// Where the runtimes' state files are (`/` but in tests).
    state: PathBuf,
    /// Cgroup ids handed out so far.
    ids: HashSet<u64>,
    /// Containers described, by id; one with neither name nor pod is read again.
    described: HashMap<String, ContainerInfo>,
    /// Per value: the ids of the containers it matched so far.
    matched: Vec<BTreeSet<String>>,
}

/// Containers described before the table starts over.
const MAX_DESCRIBED: usize = 4096;

impl ContainerFilter {
    /// The containers of this machine: its cgroup2 hierarchy, the runtimes' state under
    /// `host_root` (`/`, or where a container sees the host's file system).
    #[must_use]
    pub(crate) fn system(selectors: Vec<Selector>, host_root: &Path) -> Self {
        Self::new(selectors, hierarchy_root(host_root), host_root)
    }

    #[must_use]
    pub(crate) fn new(selectors: Vec<Selector>, cgroup2: Option<PathBuf>, state: &Path) -> Self {
        Self {
            matched: vec![BTreeSet::new(); selectors.len()],
            selectors,
            cgroup2,
            state: state.to_path_buf(),
            ids: HashSet::new(),
            described: HashMap::new(),
        }
    }

    /// Whether there is a cgroup2 hierarchy to find containers in.
    #[must_use]
    pub(crate) fn has_cgroup2(&self) -> bool {
        self.cgroup2.is_some()
    }

    /// The cgroup ids handed out so far.
    #[must_use]
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.ids.iter().copied().collect()
    }

    /// What the values that have matched no container yet ask for (`Selector::what`).
    #[must_use]
    pub(crate) fn waiting(&self) -> Vec<String> {
        self.selectors
            .iter()
            .zip(&self.matched)
            .filter(|(_, m)| m.is_empty())
            .map(|(s, _)| s.what())
            .collect()
    }

    /// Walks the hierarchy: the cgroups of the wanted containers (and below them) not
    /// handed out before.
    pub(crate) fn refresh(&mut self) -> Found {
        let mut found = Found::default();
        let Some(root) = self.cgroup2.clone() else {
            return found;
        };
        let mut dirs = Vec::new();
        walk(&root, &root, 0, &mut dirs);
        if self.described.len() >= MAX_DESCRIBED {
            self.described = HashMap::new();
        }
        // The containers in the hierarchy now, each described once.
        let mut present: Vec<String> = Vec::new();
        let mut of_dir: Vec<Option<String>> = Vec::with_capacity(dirs.len());
        for (_, path) in &dirs {
            let container = container_of_cgroup_path(path);
            if let Some(c) = &container {
                // Read again while the state says nothing (not written yet).
                let stale = self
                    .described
                    .get(&c.id)
                    .is_none_or(|info| info.name.is_none() && info.pod.is_none());
                if stale {
                    self.described
                        .insert(c.id.clone(), describe(&self.state, c));
                }
                if !present.contains(&c.id) {
                    present.push(c.id.clone());
                }
            }
            of_dir.push(container.map(|c| c.id));
        }
        // Which containers each value names now.
        let mut wanted: HashSet<&str> = HashSet::new();
        for (i, selector) in self.selectors.iter().enumerate() {
            let mut hits: Vec<&str> = present
                .iter()
                .filter(|id| self.described.get(*id).is_some_and(|c| selector.names(c)))
                .map(String::as_str)
                .collect();
            if hits.is_empty() {
                if let Some(prefix) = selector.prefix() {
                    let by_prefix: Vec<&str> = present
                        .iter()
                        .filter(|id| id.starts_with(prefix))
                        .map(String::as_str)
                        .collect();
                    if by_prefix.len() > 1 {
                        found.ambiguous.push((
                            prefix.to_string(),
                            by_prefix.iter().map(|s| (*s).to_string()).collect(),
                        ));
                    } else {
                        hits = by_prefix;
                    }
                }
            }
            for id in hits {
                wanted.insert(id);
                if self.matched[i].is_empty() {
                    if let Some(info) = self.described.get(id) {
                        found.appeared.push(Appeared {
                            what: selector.what(),
                            container: info.clone(),
                        });
                    }
                }
                self.matched[i].insert(id.to_string());
            }
        }
        // Their cgroups and every cgroup below one (the walk lists a directory before
        // those in it).
        let mut taken: HashSet<&str> = HashSet::new();
        for ((ino, path), container) in dirs.iter().zip(&of_dir) {
            let below = path
                .rsplit_once('/')
                .is_some_and(|(parent, _)| taken.contains(parent));
            let named = container.as_deref().is_some_and(|id| wanted.contains(id));
            if below || named {
                taken.insert(path.as_str());
                if self.ids.insert(*ino) {
                    found.new_ids.push(*ino);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
