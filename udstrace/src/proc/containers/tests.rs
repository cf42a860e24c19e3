//! Cgroup paths as each runtime and cgroup driver write them (`state.rs`: the runtimes' state
//! files).

use super::*;

use Runtime::{Containerd, CriO, Docker, Podman};

const A: &str = "a617497c099b3177bce1d7b8f345faa0c7ac0291bf38618772d1c3d4231d0e0c";
const B: &str = "05caa436049dcb66afe7f7a18005eb23ba9cbdf7d8d8b067592a9c4ed0bdc450";
const C: &str = "43f4c04f01bd98ea66b56890aa983241dfa2be6b4e9beb70001961e598edec05";
const D: &str = "0f3f62f36c49d33322289ddc891027473629fed969b082e7a4638128cca07d12";
const E: &str = "22b80a89e3d6cd5622a2b8d172054e3ea9db7a803a42ec9055753f31fd062222";
const F: &str = "59145031e7946fa2c8620c7576a03e28b25ac7cdaf8d0866afd1c11ade4068aa";
/// A pod's uid as the cgroupfs driver writes it, and as the systemd driver does.
const POD: &str = "2c48913c-b29f-11e7-9350-020968147796";
const POD_SYSTEMD: &str = "2c48913c_b29f_11e7_9350_020968147796";
/// A static pod's uid (a hash of its manifest).
const STATIC_POD: &str = "5b4ecb0ab4eb4d8b46bc5e0a1c7f4e6b";

fn reference(runtime: Runtime, id: &str) -> ContainerRef {
    ContainerRef {
        runtime,
        id: id.to_owned(),
    }
}

#[track_caller]
fn check(path: &str, expected: Option<(Runtime, &str)>) {
    assert_eq!(
        container_of_cgroup_path(path),
        expected.map(|(runtime, id)| reference(runtime, id)),
        "{path}"
    );
}

#[test]
fn docker_cgroups() {
    // cgroupfs driver, v1 and v2 alike (this machine's hybrid layout: `0::/docker/ID`).
    check(&format!("/docker/{A}"), Some((Docker, A)));
    // systemd driver.
    check(
        &format!("/system.slice/docker-{A}.scope"),
        Some((Docker, A)),
    );
    // Rootless docker, systemd driver.
    check(
        &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{A}.scope"),
        Some((Docker, A)),
    );
    // The systemd driver's `SLICE:PREFIX:ID`, as docker hands it to runc.
    check(&format!("/system.slice:docker:{A}"), Some((Docker, A)));
    // A cgroup inside the container's (systemd running in it).
    check(&format!("/docker/{A}/init.scope"), Some((Docker, A)));
    check(
        &format!("/system.slice/docker-{A}.scope/system.slice/dbus.service"),
        Some((Docker, A)),
    );
}

#[test]
fn kubernetes_cgroups() {
    // cgroupfs driver: burstable, guaranteed (no QoS level), a static pod.
    check(
        &format!("/kubepods/burstable/pod{POD}/{B}"),
        Some((Containerd, B)),
    );
    check(&format!("/kubepods/pod{POD}/{B}"), Some((Containerd, B)));
    check(
        &format!("/kubepods/besteffort/pod{STATIC_POD}/{B}"),
        Some((Containerd, B)),
    );
    // systemd driver: containerd, CRI-O, docker (cri-dockerd).
    let pod_slice = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice"
    );
    check(
        &format!("{pod_slice}/cri-containerd-{B}.scope"),
        Some((Containerd, B)),
    );
    check(&format!("{pod_slice}/crio-{D}.scope"), Some((CriO, D)));
    check(&format!("{pod_slice}/docker-{A}.scope"), Some((Docker, A)));
    // The systemd driver's `SLICE:PREFIX:ID`, as cgroup v1 hierarchies may show it.
    check(
        &format!(
            "/system.slice/containerd.service/kubepods-besteffort-pod{POD_SYSTEMD}.slice:cri-containerd:{B}"
        ),
        Some((Containerd, B)),
    );
    check(
        &format!("/kubepods-besteffort-pod{POD_SYSTEMD}.slice:crio:{D}"),
        Some((CriO, D)),
    );
    // CRI-O, cgroupfs driver.
    check(
        &format!("/kubepods/burstable/pod{POD}/crio-{D}"),
        Some((CriO, D)),
    );
    // Seen from inside another cgroup namespace.
    check(&format!("/../crio-{D}.scope"), Some((CriO, D)));
    // The pod's own cgroup, and CRI-O's monitor beside the container.
    check(&format!("/kubepods/burstable/pod{POD}"), None);
    check(&pod_slice, None);
    check(&format!("{pod_slice}/crio-conmon-{D}.scope"), None);
    check(
        &format!("/kubepods/burstable/pod{POD}/crio-conmon-{D}"),
        None,
    );
}

#[test]
fn podman_cgroups() {
    check(
        &format!("/machine.slice/libpod-{C}.scope"),
        Some((Podman, C)),
    );
    // crun's sub-cgroup for the container's processes under cgroup v2.
    check(
        &format!("/machine.slice/libpod-{C}.scope/container"),
        Some((Podman, C)),
    );
    // In a podman pod.
    check(
        &format!("/machine.slice/machine-libpod_pod_{F}.slice/libpod-{C}.scope"),
        Some((Podman, C)),
    );
    // Rootless.
    check(
        &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{C}.scope"),
        Some((Podman, C)),
    );
    // cgroupfs driver.
    check(&format!("/libpod_parent/libpod-{C}"), Some((Podman, C)));
    // conmon, the container's monitor, is not the container.
    check(&format!("/machine.slice/libpod-conmon-{C}.scope"), None);
    check(
        &format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{C}.scope"
        ),
        None,
    );
}

#[test]
fn nested_containers_give_the_innermost() {
    // docker in docker.
    check(&format!("/docker/{A}/docker/{E}"), Some((Docker, E)));
    check(
        &format!("/system.slice/docker-{A}.scope/system.slice/docker-{E}.scope"),
        Some((Docker, E)),
    );
    // A Kubernetes node in a docker container (kind), systemd driver inside.
    check(
        &format!(
            "/system.slice/docker-{A}.scope/kubelet.slice/kubelet-kubepods.slice/\
             kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{POD_SYSTEMD}.slice/\
             cri-containerd-{E}.scope"
        ),
        Some((Containerd, E)),
    );
    check(
        &format!("/docker/{A}/kubepods/burstable/pod{POD}/{E}"),
        Some((Containerd, E)),
    );
    // podman in docker.
    check(
        &format!("/docker/{A}/libpod_parent/libpod-{E}"),
        Some((Podman, E)),
    );
    // The outer container's own processes.
    check(&format!("/docker/{A}/kubelet.slice"), Some((Docker, A)));
}

#[test]
fn host_cgroups_are_no_container() {
    let upper = A.to_uppercase();
    for path in [
        String::new(),
        "/".into(),
        "/init.scope".into(),
        "/system.slice/ssh.service".into(),
        "/system.slice/docker.service".into(),
        "/system.slice/containerd.service".into(),
        "/user.slice/user-1000.slice/session-2.scope".into(),
        "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service".into(),
        "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope".into(),
        // A bare id under a parent no runtime uses: a CI runner's job, not a container.
        format!("/actions_job/{A}"),
        format!("/{A}"),
        format!("/kubepods/burstable/podnot-a-uid/{A}"),
        "/docker".into(),
        "/docker/not-an-id".into(),
        format!("/docker/{upper}"),
        format!("/docker/{}", &A[..63]),
        format!("/docker/{A}0"),
        "/system.slice/docker-abc123.scope".into(),
        format!("/system.slice/docker-{A}.service"),
        format!("/system.slice/dockerd-{A}.scope"),
        format!("/system.slice/unknown-{A}.scope"),
        format!("/system.slice/containerd.service/x.slice:unknown:{A}"),
        format!("/x.slice:docker:{A}:extra"),
    ] {
        check(&path, None);
    }
}

#[test]
fn proc_cgroup_lines() {
    // cgroup v2.
    assert_eq!(
        container_of_proc_cgroup(&format!("0::/system.slice/docker-{A}.scope\n")),
        Some(reference(Docker, A))
    );
    // This machine's hybrid layout: v1 controllers and the unified line.
    let hybrid = format!(
        "12:blkio:/docker/{A}\n11:memory:/docker/{A}\n10:cpu,cpuacct:/docker/{A}\n\
         1:name=systemd:/docker/{A}\n0::/docker/{A}\n"
    );
    assert_eq!(
        container_of_proc_cgroup(&hybrid),
        Some(reference(Docker, A))
    );
    // cgroup v1 only, with the systemd driver's `SLICE:PREFIX:ID` (colons in the path).
    let v1 = format!(
        "12:cpu,cpuacct:/system.slice/containerd.service/kubepods-besteffort-pod{POD_SYSTEMD}.slice:cri-containerd:{B}\n\
         1:name=systemd:/system.slice/containerd.service/kubepods-besteffort-pod{POD_SYSTEMD}.slice:cri-containerd:{B}\n"
    );
    assert_eq!(
        container_of_proc_cgroup(&v1),
        Some(reference(Containerd, B))
    );
    // The unified line first, wherever it is.
    let both = format!("4:memory:/docker/{A}\n0::/machine.slice/libpod-{C}.scope\n");
    assert_eq!(container_of_proc_cgroup(&both), Some(reference(Podman, C)));
    // A unified line that names no container: the v1 lines'.
    let unified_root = format!("0::/\n5:pids:/system.slice/ssh.service\n4:memory:/docker/{A}\n");
    assert_eq!(
        container_of_proc_cgroup(&unified_root),
        Some(reference(Docker, A))
    );
    // The host's processes, and text that is no /proc/PID/cgroup.
    for text in [
        "0::/init.scope\n",
        "0::/user.slice/user-1000.slice/session-2.scope\n",
        "12:memory:/user.slice\n1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n0::/user.slice/user-1000.slice/session-2.scope\n",
        "",
        "\n\n",
        "garbage",
        &format!("/docker/{A}"),
    ] {
        assert_eq!(container_of_proc_cgroup(text), None, "{text:?}");
    }
}

mod state;
