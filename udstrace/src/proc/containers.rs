//! Which container a process or a cgroup is in, and what its runtime calls it.
//!
//! The container comes from the cgroup path (`/proc/PID/cgroup`): each runtime names its
//! containers' cgroups its own way, with the cgroupfs or the systemd driver, under cgroup v1
//! or v2. The name, the Kubernetes pod and the image come from the runtimes' own state files,
//! read as they lie on disk (no API client, no socket): docker's `config.v2.json`, the OCI
//! spec containerd and CRI-O hand to runc (with Kubernetes' CRI annotations), podman's
//! `containers.json`. A missing, unreadable or unexpected file only leaves the name unknown.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// Which runtime made a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Runtime {
    /// Docker (moby), whichever containerd runs it.
    Docker,
    /// containerd without docker: Kubernetes' CRI, nerdctl, ctr.
    Containerd,
    /// Podman, rootful or rootless.
    Podman,
    /// CRI-O (Kubernetes).
    CriO,
}

impl Runtime {
    /// The runtime's name as its users write it.
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Podman => "podman",
            Runtime::CriO => "cri-o",
        }
    }
}

/// A container as its cgroup names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ContainerRef {
    pub(crate) runtime: Runtime,
    /// The full id: 64 lowercase hex digits.
    pub(crate) id: String,
}

/// A container with what its runtime's state files say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerInfo {
    /// The runtime that manages it (docker, when containerd runs it for docker).
    pub(crate) runtime: Runtime,
    pub(crate) id: String,
    /// The name `docker ps` / `podman ps` show, or the Kubernetes container name.
    pub(crate) name: Option<String>,
    /// The Kubernetes pod, `namespace/name`.
    pub(crate) pod: Option<String>,
    /// The image as it was asked for (`redis:7`), not its digest.
    pub(crate) image: Option<String>,
}

impl ContainerInfo {
    /// What to call the container: its name, else its short id (the first 12 hex digits,
    /// as `docker ps` shows it).
    #[must_use]
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.id.chars().take(12).collect(),
        }
    }
}

/// The prefixes runtimes give a container's cgroup with the systemd driver: runc turns
/// `SLICE:PREFIX:ID` into the unit `PREFIX-ID.scope` (some cgroup v1 hierarchies show the
/// `SLICE:PREFIX:ID` form itself). The cgroupfs driver names CRI-O's and podman's
/// `PREFIX-ID`.
const PREFIXES: [(&str, Runtime); 4] = [
    ("docker", Runtime::Docker),
    ("cri-containerd", Runtime::Containerd),
    ("crio", Runtime::CriO),
    ("libpod", Runtime::Podman),
];

/// Whether `text` is a container id: 64 lowercase hex digits (docker, containerd, CRI-O and
/// podman all use them). Ids become path components, so nothing else is one.
fn is_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn container(runtime: Runtime, id: &str) -> Option<ContainerRef> {
    is_id(id).then(|| ContainerRef {
        runtime,
        id: id.to_owned(),
    })
}

/// Whether a cgroup is a Kubernetes pod's with the cgroupfs driver: `pod` and the pod's
/// uid (a UUID, or 32 hex digits for a static pod).
fn is_pod(segment: &str) -> bool {
    segment.strip_prefix("pod").is_some_and(|uid| {
        uid.len() >= 32 && uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
    })
}

/// The container one component of a cgroup path names, `parent` being the component above.
fn container_of_segment(parent: &str, segment: &str) -> Option<ContainerRef> {
    // systemd driver: `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`,
    // `libpod-ID.scope`. The `crio-conmon-ID.scope` and `libpod-conmon-ID.scope` beside
    // them hold the runtime's monitor, not the container (their rest is no id).
    if let Some(unit) = segment.strip_suffix(".scope") {
        return PREFIXES.iter().find_map(|&(prefix, runtime)| {
            let id = unit.strip_prefix(prefix)?.strip_prefix('-')?;
            container(runtime, id)
        });
    }
    // systemd driver, as cgroup v1 hierarchies may show it: `SLICE.slice:PREFIX:ID`.
    let mut parts = segment.split(':');
    if let (Some(slice), Some(prefix), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        let (_, runtime) = PREFIXES.iter().find(|(p, _)| *p == prefix)?;
        return slice
            .strip_suffix(".slice")
            .and_then(|_| container(*runtime, id));
    }
    // cgroupfs driver: `crio-ID` (in a pod's cgroup), `libpod-ID` (in `libpod_parent`).
    if let Some(id) = segment.strip_prefix("crio-") {
        return container(Runtime::CriO, id);
    }
    if let Some(id) = segment.strip_prefix("libpod-") {
        return container(Runtime::Podman, id);
    }
    // cgroupfs driver: docker's `/docker/ID`, and a Kubernetes pod's containers,
    // `/kubepods/QOS/podUID/ID` (containerd's CRI; docker through cri-dockerd keeps its
    // containers in containerd's `moby` namespace, which `describe` recognises). A bare id
    // anywhere else (a CI runner's `/actions_job/ID`) is not known to be a container.
    if is_id(segment) {
        if parent == "docker" {
            return container(Runtime::Docker, segment);
        }
        if is_pod(parent) {
            return container(Runtime::Containerd, segment);
        }
    }
    None
}

/// The container cgroup `path` belongs to: the innermost one when containers are nested (a
/// container's cgroup holds those started inside it). None for the host's own cgroups
/// (`/`, `/system.slice/ssh.service`, `/user.slice/...`).
#[must_use]
pub(crate) fn container_of_cgroup_path(path: &str) -> Option<ContainerRef> {
    let mut found = None;
    let mut parent = "";
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if let Some(container) = container_of_segment(parent, segment) {
            found = Some(container);
        }
        parent = segment;
    }
    found
}

/// The container a `/proc/PID/cgroup` text names, and the cgroup path that names it: the
/// unified hierarchy's `0::PATH` line (cgroup v2, or the hybrid layout's unified line)
/// first, else the first cgroup v1 line `ID:CONTROLLERS:PATH` that names one.
fn proc_cgroup_container(text: &str) -> Option<(&str, ContainerRef)> {
    fn named(path: &str) -> Option<(&str, ContainerRef)> {
        container_of_cgroup_path(path).map(|container| (path, container))
    }
    let lines = text.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let hierarchy = fields.next()?;
        let controllers = fields.next()?;
        // The path itself may hold colons (`SLICE:PREFIX:ID`).
        let path = fields.next()?;
        Some((hierarchy == "0" && controllers.is_empty(), path))
    });
    lines
        .clone()
        .filter(|&(unified, _)| unified)
        .find_map(|(_, path)| named(path))
        .or_else(|| {
            lines
                .filter(|&(unified, _)| !unified)
                .find_map(|(_, path)| named(path))
        })
}

/// The container a `/proc/PID/cgroup` text names: its `0::` line's, else any cgroup v1
/// line's.
#[cfg(test)]
#[must_use]
pub(crate) fn container_of_proc_cgroup(text: &str) -> Option<ContainerRef> {
    proc_cgroup_container(text).map(|(_, container)| container)
}

/// Docker's state, one folder per container.
const DOCKER_CONTAINERS: &str = "var/lib/docker/containers";
/// containerd's running tasks, one folder per namespace, then per container, each holding
/// its OCI spec (`config.json`).
const CONTAINERD_TASKS: &str = "run/containerd/io.containerd.runtime.v2.task";
/// The tasks of the containerd docker starts itself (docker 20.10 without a system
/// containerd), namespace `moby`.
const DOCKER_CONTAINERD_TASKS: &str = "run/docker/containerd/daemon/io.containerd.runtime.v2.task";
/// containers/storage, rootful (podman, CRI-O): the graph root and the run root.
const STORAGE: &str = "var/lib/containers/storage";
const STORAGE_RUN: &str = "run/containers/storage";
/// containers/storage of a rootless podman, under a home folder.
const ROOTLESS_STORAGE: &str = ".local/share/containers/storage";

/// Reads what the runtime's state files under `root` (`/` but in tests) say about
/// `container`. Whatever is missing or malformed is left unknown.
#[must_use]
pub(crate) fn describe(root: &Path, container: &ContainerRef) -> ContainerInfo {
    let mut info = ContainerInfo {
        runtime: container.runtime,
        id: container.id.clone(),
        name: None,
        pod: None,
        image: None,
    };
    // The id becomes a path component: only a real id is looked up.
    if is_id(&info.id) {
        match info.runtime {
            Runtime::Docker => docker(root, &mut info),
            Runtime::Containerd => containerd(root, &mut info),
            Runtime::Podman => podman(root, &mut info),
            Runtime::CriO => crio(root, &mut info),
        }
    }
    info
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// A non-empty JSON string.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A Kubernetes pod as `namespace/name`.
fn pod(namespace: Option<String>, name: Option<String>) -> Option<String> {
    match (namespace, name) {
        (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
        (None, name) => name,
        (Some(_), None) => None,
    }
}

/// Docker: `config.v2.json`, `"Name": "/web-1"` and `"Config": {"Image": ...}`; a container
/// Kubernetes made through cri-dockerd also has the pod in its labels.
fn docker(root: &Path, info: &mut ContainerInfo) {
    let Some(config) = read_json(
        &root
            .join(DOCKER_CONTAINERS)
            .join(&info.id)
            .join("config.v2.json"),
    ) else {
        return;
    };
    let labels = config.pointer("/Config/Labels");
    let label = |key: &str| text(labels.and_then(|l| l.get(key)));
    info.name = label("io.kubernetes.container.name").or_else(|| {
        text(config.get("Name"))
            .map(|name| name.trim_start_matches('/').to_owned())
            .filter(|name| !name.is_empty())
    });
    info.pod = pod(
        label("io.kubernetes.pod.namespace"),
        label("io.kubernetes.pod.name"),
    );
    info.image = text(config.pointer("/Config/Image"));
}

/// containerd: the task's OCI spec, in whichever namespace holds it (the cgroup path does
/// not say). Namespace `moby` is docker's: docker's own state has the name. Kubernetes'
/// containers (namespace `k8s.io`) carry CRI annotations; nerdctl's its `nerdctl/name`.
fn containerd(root: &Path, info: &mut ContainerInfo) {
    let docker_task = root
        .join(DOCKER_CONTAINERD_TASKS)
        .join("moby")
        .join(&info.id);
    if docker_task.join("config.json").is_file() {
        info.runtime = Runtime::Docker;
        return docker(root, info);
    }
    let Ok(namespaces) = fs::read_dir(root.join(CONTAINERD_TASKS)) else {
        return;
    };
    let Some((namespace, spec)) = namespaces.flatten().find_map(|namespace| {
        let spec = namespace.path().join(&info.id).join("config.json");
        spec.is_file().then(|| (namespace.file_name(), spec))
    }) else {
        return;
    };
    if namespace == "moby" {
        info.runtime = Runtime::Docker;
        return docker(root, info);
    }
    let Some(spec) = read_json(&spec) else {
        return;
    };
    let annotations = spec.get("annotations");
    let annotation = |key: &str| text(annotations.and_then(|a| a.get(key)));
    info.name =
        annotation("io.kubernetes.cri.container-name").or_else(|| annotation("nerdctl/name"));
    info.pod = pod(
        annotation("io.kubernetes.cri.sandbox-namespace"),
        annotation("io.kubernetes.cri.sandbox-name"),
    );
    info.image = annotation("io.kubernetes.cri.image-name");
}

/// Podman: containers/storage's list of containers (`containers.json`, and
/// `volatile-containers.json` for `--rm` ones) in the `DRIVER-containers` folder of the
/// rootful store or of a rootless user's. Each entry: `"id"`, `"names"`, and `"metadata"`,
/// a JSON string holding `"image-name"`.
fn podman(root: &Path, info: &mut ContainerInfo) {
    let mut stores = vec![root.join(STORAGE)];
    if let Ok(homes) = fs::read_dir(root.join("home")) {
        stores.extend(
            homes
                .flatten()
                .map(|home| home.path().join(ROOTLESS_STORAGE)),
        );
    }
    for store in stores {
        let Ok(folders) = fs::read_dir(&store) else {
            continue;
        };
        for folder in folders.flatten() {
            if !folder
                .file_name()
                .to_string_lossy()
                .ends_with("-containers")
            {
                continue;
            }
            for list in ["containers.json", "volatile-containers.json"] {
                let Some(Value::Array(entries)) = read_json(&folder.path().join(list)) else {
                    continue;
                };
                let id = Some(info.id.as_str());
                if let Some(entry) = entries
                    .iter()
                    .find(|e| e.get("id").and_then(Value::as_str) == id)
                {
                    info.name = text(entry.pointer("/names/0"));
                    info.image = entry
                        .get("metadata")
                        .and_then(Value::as_str)
                        .and_then(|m| serde_json::from_str::<Value>(m).ok())
                        .and_then(|m| text(m.get("image-name")));
                    return;
                }
            }
        }
    }
}

/// CRI-O: the container's OCI spec in containers/storage (`userdata/config.json`, in the
/// graph root or else the run root), with Kubernetes' annotations.
fn crio(root: &Path, info: &mut ContainerInfo) {
    let Some(spec) = [STORAGE, STORAGE_RUN].iter().find_map(|store| {
        read_json(
            &root
                .join(store)
                .join("overlay-containers")
                .join(&info.id)
                .join("userdata/config.json"),
        )
    }) else {
        return;
    };
    let annotations = spec.get("annotations");
    let annotation = |key: &str| text(annotations.and_then(|a| a.get(key)));
    info.name = annotation("io.kubernetes.container.name");
    info.pod = pod(
        annotation("io.kubernetes.pod.namespace"),
        annotation("io.kubernetes.pod.name"),
    );
    info.image = annotation("io.kubernetes.cri-o.ImageName");
}

/// How many cgroups [`Containers`] remembers before it starts over.
const CACHE_LIMIT: usize = 4096;

/// Processes' containers, each cgroup's described once: the state files are read the first
/// time a container's cgroup is seen.
pub(crate) struct Containers {
    root: PathBuf,
    proc: PathBuf,
    by_cgroup: HashMap<String, ContainerInfo>,
}

impl Containers {
    /// Reads the runtimes' state under `root` and processes' cgroups under `proc` (`/` and
    /// `/proc` but in tests).
    #[must_use]
    pub(crate) fn new(root: &Path, proc: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            proc: proc.to_path_buf(),
            by_cgroup: HashMap::new(),
        }
    }

    /// The container process `pid` is in; None when it is in none, or has exited.
    pub(crate) fn of_pid(&mut self, pid: u32) -> Option<ContainerInfo> {
        let text = fs::read_to_string(self.proc.join(pid.to_string()).join("cgroup")).ok()?;
        let (path, container) = proc_cgroup_container(&text)?;
        Some(self.describe(path, &container))
    }

    /// The container cgroup `path` belongs to.
    pub(crate) fn of_cgroup(&mut self, path: &str) -> Option<ContainerInfo> {
        let container = container_of_cgroup_path(path)?;
        Some(self.describe(path, &container))
    }

    fn describe(&mut self, path: &str, container: &ContainerRef) -> ContainerInfo {
        if let Some(info) = self.by_cgroup.get(path) {
            return info.clone();
        }
        if self.by_cgroup.len() >= CACHE_LIMIT {
            self.by_cgroup = HashMap::new();
        }
        let info = describe(&self.root, container);
        // A container not named yet (its runtime has not written its state) is looked for
        // again next time.
        if info.name.is_some() {
            self.by_cgroup.insert(path.to_owned(), info.clone());
        }
        info
    }
}

#[cfg(test)]
mod tests;
