//! The runtimes' state files, laid out as each runtime lays them out in a temporary root:
//! names, pods and images read, and what is left when a file is missing or malformed.

use super::*;

/// A temporary root folder, removed when dropped.
struct Fixture {
    root: PathBuf,
}

impl Fixture {
    fn new(test: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("udstrace-containers-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Self { root }
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn describe(&self, runtime: Runtime, id: &str) -> ContainerInfo {
        describe(&self.root, &reference(runtime, id))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn info(
    runtime: Runtime,
    id: &str,
    name: Option<&str>,
    pod: Option<&str>,
    image: Option<&str>,
) -> ContainerInfo {
    ContainerInfo {
        runtime,
        id: id.to_owned(),
        name: name.map(str::to_owned),
        pod: pod.map(str::to_owned),
        image: image.map(str::to_owned),
    }
}

fn bare(runtime: Runtime, id: &str) -> ContainerInfo {
    info(runtime, id, None, None, None)
}

/// docker's `config.v2.json` (shortened: the fields around those read, as docker 20.10
/// writes them).
fn docker_config(id: &str, name: &str, image: &str, labels: &str) -> String {
    format!(
        r#"{{"StreamConfig":{{}},"State":{{"Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"RemovalInProgress":false,"Dead":false,"Pid":4242,"ExitCode":0,"Error":"","StartedAt":"2026-11-29T10:00:00.000000000Z","FinishedAt":"0001-01-01T00:00:00Z","Health":null}},"ID":"{id}","Created":"2026-11-29T09:59:59.000000000Z","Managed":false,"Path":"python3","Args":["-m","http.server"],"Config":{{"Hostname":"{short}","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["python3","-m","http.server"],"Image":"{image}","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{labels}}},"Image":"sha256:90801a9127664f213bd95dd2ca98c0294928d269dbeaa0f776359e3781f78526","NetworkSettings":{{"Bridge":"","SandboxID":"","HairpinMode":false,"Networks":{{}}}},"LogPath":"/var/lib/docker/containers/{id}/{id}-json.log","Name":"{name}","Driver":"overlay2","OS":"linux","MountLabel":"","ProcessLabel":"","RestartCount":0,"HasBeenStartedBefore":false,"HasBeenManuallyStopped":false,"MountPoints":{{}},"SecretReferences":null,"ConfigReferences":null,"AppArmorProfile":"docker-default","HostnamePath":"/var/lib/docker/containers/{id}/hostname","HostsPath":"/var/lib/docker/containers/{id}/hosts","ShmPath":"","ResolvConfPath":"/var/lib/docker/containers/{id}/resolv.conf","SeccompProfile":"","NoNewPrivileges":false}}"#,
        short = &id[..12]
    )
}

/// An OCI runtime spec (`config.json`) with `annotations` (shortened).
fn oci_spec(annotations: &str) -> String {
    format!(
        r#"{{"ociVersion":"1.0.2-dev","process":{{"user":{{"uid":0,"gid":0}},"args":["redis-server"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/data","capabilities":{{"bounding":["CAP_CHOWN"]}},"oomScoreAdj":-997}},"root":{{"path":"rootfs"}},"hostname":"","mounts":[{{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]}}],"annotations":{annotations},"linux":{{"resources":{{"devices":[{{"allow":false,"access":"rwm"}}]}},"cgroupsPath":"kubepods-burstable-pod{POD_SYSTEMD}.slice:cri-containerd:{B}","namespaces":[{{"type":"pid"}},{{"type":"ipc"}},{{"type":"uts"}},{{"type":"mount"}},{{"type":"network"}}]}}}}"#
    )
}

#[test]
fn docker_state() {
    let f = Fixture::new("docker");
    f.write(
        &format!("var/lib/docker/containers/{A}/config.v2.json"),
        &docker_config(A, "/web-1", "udstrace-test:latest", "{}"),
    );
    assert_eq!(
        f.describe(Docker, A),
        info(Docker, A, Some("web-1"), None, Some("udstrace-test:latest"))
    );
    // Kubernetes through cri-dockerd: the pod and container from the labels.
    f.write(
        &format!("var/lib/docker/containers/{E}/config.v2.json"),
        &docker_config(
            E,
            &format!("/k8s_app_web-0_shop_{POD}_0"),
            "nginx:1.25",
            &format!(
                r#"{{"annotation.io.kubernetes.container.restartCount":"0","io.kubernetes.container.name":"app","io.kubernetes.docker.type":"container","io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"shop","io.kubernetes.pod.uid":"{POD}"}}"#
            ),
        ),
    );
    assert_eq!(
        f.describe(Docker, E),
        info(
            Docker,
            E,
            Some("app"),
            Some("shop/web-0"),
            Some("nginx:1.25")
        )
    );
}

#[test]
fn containerd_kubernetes_state() {
    let f = Fixture::new("containerd-k8s");
    let tasks = "run/containerd/io.containerd.runtime.v2.task";
    // Another namespace, without the container, is passed over.
    fs::create_dir_all(f.root.join(tasks).join("default")).unwrap();
    f.write(
        &format!("{tasks}/k8s.io/{B}/config.json"),
        &oci_spec(&format!(
            r#"{{"io.kubernetes.cri.container-name":"cache","io.kubernetes.cri.container-type":"container","io.kubernetes.cri.image-name":"docker.io/library/redis:7","io.kubernetes.cri.sandbox-id":"{F}","io.kubernetes.cri.sandbox-name":"cache-0","io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-uid":"{POD}"}}"#
        )),
    );
    assert_eq!(
        f.describe(Containerd, B),
        info(
            Containerd,
            B,
            Some("cache"),
            Some("shop/cache-0"),
            Some("docker.io/library/redis:7")
        )
    );
    // The pod's sandbox (pause) container: the pod, no container name.
    f.write(
        &format!("{tasks}/k8s.io/{F}/config.json"),
        &oci_spec(&format!(
            r#"{{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"{F}","io.kubernetes.cri.sandbox-log-directory":"/var/log/pods/shop_cache-0_{POD}","io.kubernetes.cri.sandbox-name":"cache-0","io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-uid":"{POD}"}}"#
        )),
    );
    let sandbox = f.describe(Containerd, F);
    assert_eq!(
        sandbox,
        info(Containerd, F, None, Some("shop/cache-0"), None)
    );
    assert_eq!(sandbox.label(), "59145031e794");
}

#[test]
fn containerd_other_namespaces_state() {
    let f = Fixture::new("containerd-other");
    let tasks = "run/containerd/io.containerd.runtime.v2.task";
    // nerdctl passes its labels on as annotations.
    f.write(
        &format!("{tasks}/default/{C}/config.json"),
        &oci_spec(
            r#"{"nerdctl/hostname":"43f4c04f01bd","nerdctl/name":"nginx-1","nerdctl/namespace":"default","nerdctl/networks":"[\"bridge\"]"}"#,
        ),
    );
    assert_eq!(
        f.describe(Containerd, C),
        info(Containerd, C, Some("nginx-1"), None, None)
    );
    // ctr: no annotations at all.
    f.write(&format!("{tasks}/default/{D}/config.json"), &oci_spec("{}"));
    assert_eq!(f.describe(Containerd, D), bare(Containerd, D));
}

#[test]
fn containerd_moby_namespace_is_docker() {
    // Docker on a system containerd (docker 23 and later), and on its own containerd
    // (docker 20.10, as on this machine).
    for (test, tasks) in [
        (
            "moby-system",
            "run/containerd/io.containerd.runtime.v2.task",
        ),
        (
            "moby-own",
            "run/docker/containerd/daemon/io.containerd.runtime.v2.task",
        ),
    ] {
        let f = Fixture::new(test);
        f.write(&format!("{tasks}/moby/{A}/config.json"), &oci_spec("{}"));
        f.write(
            &format!("var/lib/docker/containers/{A}/config.v2.json"),
            &docker_config(A, "/web-1", "udstrace-test:latest", "{}"),
        );
        assert_eq!(
            f.describe(Containerd, A),
            info(Docker, A, Some("web-1"), None, Some("udstrace-test:latest")),
            "{tasks}"
        );
        // Docker's state gone: still docker's.
        fs::remove_dir_all(f.root.join("var/lib/docker")).unwrap();
        assert_eq!(f.describe(Containerd, A), bare(Docker, A), "{tasks}");
    }
}

/// One entry of containers/storage's `containers.json`.
fn storage_entry(id: &str, name: &str, metadata: &str) -> String {
    format!(
        r#"{{"id":"{id}","names":["{name}"],"image":"d7af31210b288164c319bae740ca1281528390a3c5cee657e95f243670b49e6a","layer":"67b0c66296f7957a0d82c8e48442ee0d7e3b3386dadde46cd8dadf3c90d40000","metadata":{metadata},"created":"2026-11-29T10:00:00.545266929Z","flags":{{"MountLabel":"system_u:object_r:container_file_t:s0:c14,c100","ProcessLabel":"system_u:system_r:container_t:s0:c14,c100"}}}}"#
    )
}

/// containers/storage's `metadata`: JSON inside a JSON string.
fn podman_metadata(name: &str, image: &str) -> String {
    format!(
        r#""{{\"image-name\":\"{image}\",\"image-id\":\"d7af31210b288164c319bae740ca1281528390a3c5cee657e95f243670b49e6a\",\"name\":\"{name}\",\"created-at\":1795600000}}""#
    )
}

#[test]
fn podman_state() {
    let f = Fixture::new("podman");
    let rootful = "var/lib/containers/storage/overlay-containers";
    f.write(
        &format!("{rootful}/containers.json"),
        &format!(
            "[{},{}]",
            storage_entry(
                E,
                "other",
                &podman_metadata("other", "docker.io/library/alpine:3")
            ),
            storage_entry(
                C,
                "web",
                &podman_metadata("web", "quay.io/centos7/httpd-24-centos7:latest")
            ),
        ),
    );
    assert_eq!(
        f.describe(Podman, C),
        info(
            Podman,
            C,
            Some("web"),
            None,
            Some("quay.io/centos7/httpd-24-centos7:latest")
        )
    );
    // `podman run --rm`: in volatile-containers.json.
    f.write(
        &format!("{rootful}/volatile-containers.json"),
        &format!(
            "[{}]",
            storage_entry(A, "tmp", &podman_metadata("tmp", "alpine"))
        ),
    );
    assert_eq!(
        f.describe(Podman, A),
        info(Podman, A, Some("tmp"), None, Some("alpine"))
    );
    // Rootless, with another storage driver; metadata that is no JSON: the name only.
    f.write(
        "home/alice/.local/share/containers/storage/vfs-containers/containers.json",
        &format!("[{}]", storage_entry(D, "mine", r#""{not json""#)),
    );
    assert_eq!(
        f.describe(Podman, D),
        info(Podman, D, Some("mine"), None, None)
    );
    // In no list.
    assert_eq!(f.describe(Podman, B), bare(Podman, B));
}

#[test]
fn crio_state() {
    let f = Fixture::new("crio");
    let annotations = format!(
        r#"{{"io.container.manager":"cri-o","io.kubernetes.container.hash":"6a4f1bb1","io.kubernetes.container.name":"coredns","io.kubernetes.cri-o.ContainerID":"{D}","io.kubernetes.cri-o.ContainerType":"container","io.kubernetes.cri-o.ImageName":"registry.k8s.io/coredns/coredns:v1.11.1","io.kubernetes.cri-o.SandboxID":"{F}","io.kubernetes.pod.name":"coredns-6d4b75cb6d-4mtdm","io.kubernetes.pod.namespace":"kube-system","io.kubernetes.pod.uid":"{POD}"}}"#
    );
    f.write(
        &format!("var/lib/containers/storage/overlay-containers/{D}/userdata/config.json"),
        &oci_spec(&annotations),
    );
    let expected = info(
        CriO,
        D,
        Some("coredns"),
        Some("kube-system/coredns-6d4b75cb6d-4mtdm"),
        Some("registry.k8s.io/coredns/coredns:v1.11.1"),
    );
    assert_eq!(f.describe(CriO, D), expected);
    // Only in the run root.
    fs::remove_dir_all(f.root.join("var")).unwrap();
    f.write(
        &format!("run/containers/storage/overlay-containers/{D}/userdata/config.json"),
        &oci_spec(&annotations),
    );
    assert_eq!(f.describe(CriO, D), expected);
}

#[test]
fn missing_state_gives_the_id() {
    let f = Fixture::new("missing");
    for runtime in [Docker, Containerd, Podman, CriO] {
        let described = f.describe(runtime, A);
        assert_eq!(described, bare(runtime, A));
        assert_eq!(described.label(), "a617497c099b");
    }
    // A root that does not exist at all.
    let nowhere = describe(Path::new("/nonexistent/udstrace"), &reference(Podman, C));
    assert_eq!(nowhere, bare(Podman, C));
}

#[test]
fn malformed_state_gives_what_is_readable() {
    let f = Fixture::new("malformed");
    let tasks = "run/containerd/io.containerd.runtime.v2.task";
    let docker = format!("var/lib/docker/containers/{A}/config.v2.json");
    let containerd = format!("{tasks}/k8s.io/{B}/config.json");
    let podman = "var/lib/containers/storage/overlay-containers/containers.json";
    let crio = format!("var/lib/containers/storage/overlay-containers/{D}/userdata/config.json");
    let all = || {
        [
            f.describe(Docker, A),
            f.describe(Containerd, B),
            f.describe(Podman, C),
            f.describe(CriO, D),
        ]
    };
    let bare_all = [
        bare(Docker, A),
        bare(Containerd, B),
        bare(Podman, C),
        bare(CriO, D),
    ];
    // Cut short, empty, not JSON.
    for text in [
        &docker_config(A, "/web-1", "x", "{}")[..200],
        "",
        "\0\u{1}binary",
    ] {
        for path in [docker.as_str(), containerd.as_str(), podman, crio.as_str()] {
            f.write(path, text);
        }
        assert_eq!(all(), bare_all, "{text:?}");
    }
    // JSON of other shapes.
    f.write(&docker, r#"{"Name":5,"Config":"nginx"}"#);
    f.write(
        &containerd,
        r#"{"annotations":["io.kubernetes.cri.container-name"]}"#,
    );
    f.write(podman, &format!(r#"{{"id":"{C}","names":["web"]}}"#));
    f.write(&crio, r#"{"annotations":null}"#);
    assert_eq!(all(), bare_all);
    f.write(&docker, r#"{"Name":"/","Config":{"Image":""}}"#);
    f.write(
        podman,
        &format!(r#"[null,7,{{"id":5}},{{"id":"{C}","names":"web","metadata":{{}}}}]"#),
    );
    f.write(&crio, r#"[{"annotations":{}}]"#);
    assert_eq!(all(), bare_all);
    // A folder where the file should be.
    fs::remove_file(f.root.join(&docker)).unwrap();
    fs::create_dir_all(f.root.join(&docker)).unwrap();
    assert_eq!(f.describe(Docker, A), bare(Docker, A));
}

#[test]
fn only_real_ids_are_looked_up() {
    let f = Fixture::new("ids");
    f.write(
        "var/lib/docker/containers/web/config.v2.json",
        &docker_config(A, "/web-1", "x", "{}"),
    );
    f.write(
        "etc/config.v2.json",
        &docker_config(A, "/escaped", "x", "{}"),
    );
    for id in ["web", "../../../../etc", ""] {
        assert_eq!(f.describe(Docker, id), bare(Docker, id));
    }
}

#[test]
fn labels() {
    let mut web = info(Docker, A, Some("web-1"), None, None);
    assert_eq!(web.label(), "web-1");
    web.name = None;
    assert_eq!(web.label(), "a617497c099b");
    assert_eq!(bare(Docker, "abc").label(), "abc");
    assert_eq!(
        [Docker, Containerd, Podman, CriO].map(Runtime::name),
        ["docker", "containerd", "podman", "cri-o"]
    );
}

#[test]
fn cache_by_cgroup() {
    let f = Fixture::new("cache");
    let config = format!("var/lib/docker/containers/{A}/config.v2.json");
    f.write(&config, &docker_config(A, "/web-1", "x", "{}"));
    f.write(
        "proc/100/cgroup",
        &format!("1:name=systemd:/docker/{A}\n0::/docker/{A}\n"),
    );
    f.write("proc/101/cgroup", "0::/init.scope\n");
    f.write("proc/102/cgroup", "not a cgroup file");
    let mut containers = Containers::new(&f.root, &f.root.join("proc"));
    assert_eq!(containers.of_pid(100).unwrap().label(), "web-1");
    assert_eq!(containers.of_pid(101), None);
    assert_eq!(containers.of_pid(102), None);
    assert_eq!(containers.of_pid(103), None);
    // Described once per cgroup: a rename is not seen through a known cgroup.
    f.write(&config, &docker_config(A, "/renamed", "x", "{}"));
    assert_eq!(containers.of_pid(100).unwrap().label(), "web-1");
    assert_eq!(
        containers
            .of_cgroup(&format!("/docker/{A}"))
            .unwrap()
            .label(),
        "web-1"
    );
    assert_eq!(
        containers
            .of_cgroup(&format!("/docker/{A}/init.scope"))
            .unwrap()
            .label(),
        "renamed"
    );
    assert_eq!(containers.of_cgroup("/system.slice/ssh.service"), None);
    // A container without a name yet (its runtime has not written its state) is not
    // remembered: looked for again next time.
    let unnamed = format!("/docker/{:064x}", 7);
    let cached = containers.by_cgroup.len();
    assert_eq!(containers.of_cgroup(&unnamed).unwrap().name, None);
    assert_eq!(containers.by_cgroup.len(), cached);
    // Bounded: past CACHE_LIMIT cgroups it starts over.
    let known = containers.of_cgroup(&format!("/docker/{A}")).unwrap();
    while containers.by_cgroup.len() < CACHE_LIMIT {
        let other = format!("/other/{}", containers.by_cgroup.len());
        containers.by_cgroup.insert(other, known.clone());
    }
    // The next miss starts over: what was known is read again.
    assert_eq!(containers.of_cgroup(&unnamed).unwrap().name, None);
    assert!(containers.by_cgroup.is_empty());
    assert_eq!(containers.of_pid(100).unwrap().label(), "renamed");
}
