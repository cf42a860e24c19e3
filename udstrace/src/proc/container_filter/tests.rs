//! Values resolved against a cgroup2 hierarchy and runtime state laid out in a temporary
//! folder: docker containers by name, id and id prefix, a Kubernetes pod by its CRI
//! annotations, cgroups below a container, containers that start later, bad values.

use std::{fs, os::unix::fs::MetadataExt};

use super::*;

const A: &str = "a617497c099b3177bce1d7b8f345faa0c7ac0291bf38618772d1c3d4231d0e0c";
/// Shares its first five digits with `A`.
const A2: &str = "a6174f00d9b5a3c1e0ffcb6a8b71c2b1a8e3f0e5ad2ab4c1d2e3f4a5b6c7d8e9";
const B: &str = "05caa436049dcb66afe7f7a18005eb23ba9cbdf7d8d8b067592a9c4ed0bdc450";
const C: &str = "43f4c04f01bd98ea66b56890aa983241dfa2be6b4e9beb70001961e598edec05";
const SANDBOX: &str = "59145031e7946fa2c8620c7576a03e28b25ac7cdaf8d0866afd1c11ade4068aa";
const POD_UID: &str = "2c48913c-b29f-11e7-9350-020968147796";

/// A machine in a temporary folder: `sys/fs/cgroup` is its cgroup2 hierarchy.
struct Machine {
    root: PathBuf,
}

impl Machine {
    fn new(test: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "udstrace-container-filter-{}-{test}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("sys/fs/cgroup/system.slice/ssh.service")).unwrap();
        Self { root }
    }

    fn cgroup2(&self) -> PathBuf {
        self.root.join("sys/fs/cgroup")
    }

    /// Makes cgroup `path`; its id.
    fn cgroup(&self, path: &str) -> u64 {
        let dir = self.cgroup2().join(path);
        fs::create_dir_all(&dir).unwrap();
        fs::metadata(dir).unwrap().ino()
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A docker container `name` (cgroupfs driver): its cgroup's id.
    fn docker(&self, id: &str, name: &str) -> u64 {
        self.write(
            &format!("var/lib/docker/containers/{id}/config.v2.json"),
            &format!(r#"{{"ID":"{id}","Name":"/{name}","Config":{{"Image":"app"}}}}"#),
        );
        self.cgroup(&format!("docker/{id}"))
    }

    /// A container of pod `namespace/pod` made by containerd's CRI (cgroupfs driver).
    fn cri(&self, id: &str, name: Option<&str>, namespace: &str, pod: &str) -> u64 {
        let container_name = name
            .map(|n| format!(r#""io.kubernetes.cri.container-name":"{n}","#))
            .unwrap_or_default();
        self.write(
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json"),
            &format!(
                r#"{{"ociVersion":"1.0.2","annotations":{{{container_name}"io.kubernetes.cri.sandbox-name":"{pod}","io.kubernetes.cri.sandbox-namespace":"{namespace}"}}}}"#
            ),
        );
        self.cgroup(&format!("kubepods/burstable/pod{POD_UID}/{id}"))
    }

    fn filter(&self, selectors: Vec<Selector>) -> ContainerFilter {
        ContainerFilter::new(selectors, Some(self.cgroup2()), &self.root)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

#[test]
fn docker_by_name_id_and_prefix_with_cgroups_below() {
    let m = Machine::new("docker");
    let web = m.docker(A, "web-1");
    let web_init = m.cgroup(&format!("docker/{A}/init.scope"));
    let web_nested = m.cgroup(&format!("docker/{A}/docker/{C}"));
    let web_docker = m.cgroup(&format!("docker/{A}/docker"));
    let db = m.docker(B, "db");
    for selector in ["web-1", "/web-1", A, &A[..12], &A[..4]] {
        let mut f = m.filter(vec![Selector::container(selector).unwrap()]);
        let found = f.refresh();
        assert_eq!(
            sorted(found.new_ids),
            sorted(vec![web, web_init, web_docker, web_nested]),
            "{selector}"
        );
        assert!(found.ambiguous.is_empty());
        assert_eq!(found.appeared.len(), 1);
        assert_eq!(found.appeared[0].container.name.as_deref(), Some("web-1"));
        assert!(f.waiting().is_empty());
        assert!(f.refresh().new_ids.is_empty(), "handed out once");
        assert!(!f.ids().contains(&db));
    }
    // The nested container alone, by its id (it has no state here: no name).
    let mut nested = m.filter(vec![Selector::container(C).unwrap()]);
    assert_eq!(nested.refresh().new_ids, [web_nested]);
    // Two values add up.
    let mut both = m.filter(vec![
        Selector::container("db").unwrap(),
        Selector::container("web-1").unwrap(),
    ]);
    assert_eq!(
        sorted(both.refresh().new_ids),
        sorted(vec![db, web, web_init, web_docker, web_nested])
    );
    // Three hex digits are a name, not a prefix.
    let mut short = m.filter(vec![Selector::container(&A[..3]).unwrap()]);
    assert!(short.refresh().new_ids.is_empty());
    assert_eq!(short.waiting(), [format!("container {}", &A[..3])]);
}

#[test]
fn ambiguous_prefixes_take_nothing() {
    let m = Machine::new("ambiguous");
    let first = m.docker(A, "one");
    let mut f = m.filter(vec![Selector::container(&A[..5]).unwrap()]);
    assert_eq!(f.refresh().new_ids, [first]);
    // A second container with the same prefix: the prefix now names neither; what was
    // taken stays.
    m.docker(A2, "two");
    let found = f.refresh();
    assert!(found.new_ids.is_empty());
    assert_eq!(found.ambiguous.len(), 1);
    assert_eq!(found.ambiguous[0].0, &A[..5]);
    assert_eq!(f.ids(), [first]);
    // A longer prefix tells them apart.
    let mut g = m.filter(vec![Selector::container(&A2[..6]).unwrap()]);
    let found = g.refresh();
    assert!(found.ambiguous.is_empty());
    assert_eq!(found.new_ids.len(), 1);
}

#[test]
fn containers_that_start_later() {
    let m = Machine::new("later");
    let mut f = m.filter(vec![Selector::container("late").unwrap()]);
    let found = f.refresh();
    assert!(found.new_ids.is_empty() && found.appeared.is_empty());
    assert_eq!(f.waiting(), ["container late"]);
    // The cgroup appears before the runtime has written its state: not named yet.
    let id = m.cgroup(&format!("docker/{A}"));
    assert!(f.refresh().new_ids.is_empty());
    m.docker(A, "late");
    let found = f.refresh();
    assert_eq!(found.new_ids, [id]);
    assert_eq!(found.appeared.len(), 1);
    assert_eq!(found.appeared[0].what, "container late");
    // Recreated under the same name: a new id, the value does not "appear" again.
    fs::remove_dir_all(m.cgroup2().join(format!("docker/{A}"))).unwrap();
    let again = m.docker(B, "late");
    let found = f.refresh();
    assert_eq!(found.new_ids, [again]);
    assert!(found.appeared.is_empty());
}

/// A pod's containers, its sandbox among them, by `namespace/name`, from containerd's CRI
/// annotations; a container of the same name in another pod is not taken.
#[test]
fn pods_from_cri_annotations() {
    let m = Machine::new("pod");
    let app = m.cri(A, Some("app"), "shop", "cart-0");
    let sandbox = m.cri(SANDBOX, None, "shop", "cart-0");
    m.write(
        &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{B}/config.json"),
        r#"{"annotations":{"io.kubernetes.cri.container-name":"app","io.kubernetes.cri.sandbox-name":"cart-0","io.kubernetes.cri.sandbox-namespace":"test"}}"#,
    );
    let other_pod = m.cgroup(&format!(
        "kubepods/besteffort/pod11111111-2222-3333-4444-555555555555/{B}"
    ));
    let pod_cgroup = m.cgroup(&format!("kubepods/burstable/pod{POD_UID}"));
    let mut f = m.filter(vec![Selector::pod("shop/cart-0").unwrap()]);
    let found = f.refresh();
    assert_eq!(sorted(found.new_ids), sorted(vec![app, sandbox]));
    assert!(
        !f.ids().contains(&pod_cgroup),
        "the pod's own cgroup holds no process"
    );
    // By container name: both pods' `app`.
    let mut by_name = m.filter(vec![Selector::container("app").unwrap()]);
    assert_eq!(
        sorted(by_name.refresh().new_ids),
        sorted(vec![app, other_pod])
    );
    let mut nothing = m.filter(vec![Selector::pod("shop/cart-1").unwrap()]);
    assert!(nothing.refresh().new_ids.is_empty());
    assert_eq!(nothing.waiting(), ["pod shop/cart-1"]);
}

#[test]
fn no_cgroup2_finds_nothing() {
    let mut f = ContainerFilter::new(
        vec![Selector::container("web").unwrap()],
        None,
        Path::new("/nonexistent"),
    );
    assert!(!f.has_cgroup2());
    assert!(f.refresh().new_ids.is_empty());
}

#[test]
fn values() {
    assert_eq!(
        Selector::container("/web-1"),
        Ok(Selector::Container("web-1".into()))
    );
    for bad in ["", "/", "a/b"] {
        assert!(Selector::container(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Selector::pod("kube-system/coredns-1"),
        Ok(Selector::Pod("kube-system/coredns-1".into()))
    );
    for bad in ["", "foo", "/foo", "foo/", "a/b/c", "/"] {
        assert_eq!(
            Selector::pod(bad),
            Err(format!("invalid --pod `{bad}`: expected NAMESPACE/NAME")),
            "{bad:?}"
        );
    }
}
