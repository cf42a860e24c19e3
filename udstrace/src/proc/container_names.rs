//! The containers a packet names: its sender's, from the cgroup id the kernel program
//! recorded (so a process that has exited since is still named), and its receivers', from
//! their cgroup files (asked by the peer resolver once per holder); both remembered.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::{
    cgroups::CgroupPaths,
    containers::{ContainerInfo, Containers},
};
use crate::hash::FastMap;

/// Entries remembered before a table is emptied.
const MAX_ENTRIES: usize = 16_384;

/// How long a process's container is trusted before its cgroup file is read again (a pid
/// can be reused by a process in another container).
const PID_TTL: Duration = Duration::from_secs(5);

/// A sender's container as the packet writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    /// Its name, or the first 12 characters of its id.
    pub(crate) label: String,
    pub(crate) id: String,
    /// `docker`, `containerd`, `podman` or `cri-o`.
    pub(crate) runtime: &'static str,
    /// `namespace/name` of its Kubernetes pod.
    pub(crate) pod: Option<String>,
}

impl From<ContainerInfo> for Named {
    fn from(info: ContainerInfo) -> Self {
        Self {
            label: info.label(),
            runtime: info.runtime.name(),
            id: info.id,
            pod: info.pod,
        }
    }
}

/// Containers of senders and receivers.
pub(crate) struct ContainerNames {
    /// `None`: naming is off (tests of other things).
    sources: Option<(CgroupPaths, Containers)>,
    /// Cgroup id -> its container (`None`: the cgroup is in none).
    by_cgroup: FastMap<u64, Option<Named>>,
    /// Pid -> its container's label (empty: none), and when it was read.
    by_pid: FastMap<u32, (String, Instant)>,
}

impl ContainerNames {
    /// Containers of this machine's processes, their runtimes' state read under `host_root`
    /// (`/`, or where a container sees the host's file system).
    #[must_use]
    pub(crate) fn system(host_root: &Path) -> Self {
        Self::with_sources(
            CgroupPaths::system(host_root),
            Containers::new(host_root, Path::new("/proc")),
        )
    }

    /// Containers from the given cgroup hierarchy and runtime state.
    #[must_use]
    pub(crate) fn with_sources(cgroups: CgroupPaths, containers: Containers) -> Self {
        Self {
            sources: Some((cgroups, containers)),
            by_cgroup: FastMap::default(),
            by_pid: FastMap::default(),
        }
    }

    /// Names nothing.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn off() -> Self {
        Self {
            sources: None,
            by_cgroup: FastMap::default(),
            by_pid: FastMap::default(),
        }
    }

    /// Learns the path of cgroup `id`, created during the capture (a path that is not UTF-8
    /// names no container and is left to the usual lookups), and names its container now,
    /// while the runtime's state for it exists: a container that sends once and is removed
    /// (`docker run --rm`) may be gone by its first message. A container not found yet is
    /// looked up again at its first message.
    pub(crate) fn cgroup_created(&mut self, id: u64, path: &[u8]) {
        let (Some((cgroups, containers)), Ok(path)) =
            (self.sources.as_mut(), std::str::from_utf8(path))
        else {
            return;
        };
        cgroups.learn(id, path.to_string());
        if let Some(info) = containers.of_cgroup(path).filter(|i| i.name.is_some()) {
            self.remember(id, Some(Named::from(info)));
        }
    }

    /// Notes cgroup `id`'s container, emptying the table first when it is full.
    fn remember(&mut self, id: u64, named: Option<Named>) {
        if self.by_cgroup.len() >= MAX_ENTRIES {
            self.by_cgroup = FastMap::default();
        }
        self.by_cgroup.insert(id, named);
    }

    /// The container of the sender whose record says it was in cgroup `id` (process `pid`).
    pub(crate) fn of_sender(&mut self, id: Option<u64>, pid: u32) -> Option<&Named> {
        let id = id?;
        let (cgroups, containers) = self.sources.as_mut()?;
        if !self.by_cgroup.contains_key(&id) {
            // An id whose path is not known yet is looked up again next time.
            let path = cgroups.path(id, pid)?;
            let named = containers.of_cgroup(path).map(Named::from);
            self.remember(id, named);
        }
        self.by_cgroup.get(&id).and_then(Option::as_ref)
    }

    /// The container label of process `pid`; empty when it runs in none (or has exited).
    pub(crate) fn label_of(&mut self, pid: u32) -> &str {
        let Some((_, containers)) = self.sources.as_mut() else {
            return "";
        };
        let now = Instant::now();
        let fresh = self
            .by_pid
            .get(&pid)
            .is_some_and(|(_, at)| now.duration_since(*at) < PID_TTL);
        if !fresh {
            let label = containers
                .of_pid(pid)
                .map(|info| info.label())
                .unwrap_or_default();
            if self.by_pid.len() >= MAX_ENTRIES {
                self.by_pid = FastMap::default();
            }
            self.by_pid.insert(pid, (label, now));
        }
        self.by_pid
            .get(&pid)
            .map_or("", |(label, _)| label.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::MetadataExt};

    use super::*;
    use crate::{
        packet::Holder,
        proc::peers::{Fixed, PeerResolver},
    };

    /// A machine with one docker container `web-1` (process 42), a host process 7, and a
    /// process 9 of the container that has exited: named through its cgroup id.
    #[test]
    fn senders_by_cgroup_and_receivers_by_pid() {
        let id = "ab".repeat(32);
        let root = std::env::temp_dir().join(format!("udstrace-names-{}", std::process::id()));
        let cgroup2 = root.join("sys/fs/cgroup");
        fs::create_dir_all(cgroup2.join(format!("docker/{id}"))).unwrap();
        for (pid, cgroup) in [(42, format!("/docker/{id}")), (7, "/".to_string())] {
            fs::create_dir_all(root.join(format!("proc/{pid}"))).unwrap();
            fs::write(
                root.join(format!("proc/{pid}/cgroup")),
                format!("0::{cgroup}\n"),
            )
            .unwrap();
        }
        let state = root.join(format!("var/lib/docker/containers/{id}"));
        fs::create_dir_all(&state).unwrap();
        fs::write(
            state.join("config.v2.json"),
            format!(r#"{{"ID":"{id}","Name":"/web-1","Config":{{"Image":"app"}}}}"#),
        )
        .unwrap();
        let cgroup_id = fs::metadata(cgroup2.join(format!("docker/{id}")))
            .unwrap()
            .ino();
        let mut names = ContainerNames::with_sources(
            CgroupPaths::new(Some(cgroup2.clone()), root.join("proc")),
            Containers::new(&root, &root.join("proc")),
        );
        let expected = Named {
            label: "web-1".into(),
            id: id.clone(),
            runtime: "docker",
            pod: None,
        };
        assert_eq!(names.of_sender(Some(cgroup_id), 9), Some(&expected));
        let host_id = fs::metadata(&cgroup2).unwrap().ino();
        assert_eq!(names.of_sender(Some(host_id), 7), None);
        assert_eq!(names.of_sender(None, 42), None);
        assert_eq!(names.label_of(42), "web-1");
        assert_eq!(names.label_of(7), "");
        assert_eq!(names.label_of(9), "", "exited");
        assert_eq!(ContainerNames::off().label_of(42), "");
        // The peer resolver names its holders' containers, once per entry.
        let holder = |pid| Holder {
            pid,
            comm: "python3".into(),
            fd: 3,
            container: String::new(),
        };
        let table = std::collections::HashMap::from([(5, vec![holder(42), holder(7)])]);
        let mut peers = PeerResolver::with_source(Box::new(Fixed(table))).with_containers(names);
        let labels: Vec<String> = peers
            .holders(5, 1, b"", None, std::time::Duration::ZERO)
            .iter()
            .map(|h| h.container.clone())
            .collect();
        assert_eq!(labels, ["web-1", ""]);
        fs::remove_dir_all(root).unwrap();
    }

    /// A container whose cgroup was created during the capture is named from its runtime's
    /// state at once: its first message, after the container was removed, still names it. One
    /// whose state is not written yet is looked for again at its first message.
    #[test]
    fn named_when_its_cgroup_is_created() {
        let root = std::env::temp_dir().join(format!("udstrace-mkdir-{}", std::process::id()));
        let cgroup2 = root.join("sys/fs/cgroup");
        fs::create_dir_all(&cgroup2).unwrap();
        let mut names = ContainerNames::with_sources(
            CgroupPaths::new(Some(cgroup2), root.join("proc")),
            Containers::new(&root, &root.join("proc")),
        );
        let (gone, late) = ("cd".repeat(32), "ef".repeat(32));
        for (id, name) in [(&gone, "short-1"), (&late, "late-1")] {
            if id == &late {
                names.cgroup_created(31, format!("/docker/{late}").as_bytes());
            }
            let state = root.join(format!("var/lib/docker/containers/{id}"));
            fs::create_dir_all(&state).unwrap();
            fs::write(
                state.join("config.v2.json"),
                format!(r#"{{"ID":"{id}","Name":"/{name}","Config":{{"Image":"app"}}}}"#),
            )
            .unwrap();
        }
        names.cgroup_created(30, format!("/docker/{gone}").as_bytes());
        fs::remove_dir_all(root.join(format!("var/lib/docker/containers/{gone}"))).unwrap();
        let label =
            |names: &mut ContainerNames, id| names.of_sender(Some(id), 9).map(|n| n.label.clone());
        assert_eq!(label(&mut names, 30).as_deref(), Some("short-1"));
        assert_eq!(label(&mut names, 31).as_deref(), Some("late-1"));
        fs::remove_dir_all(root).unwrap();
    }
}
