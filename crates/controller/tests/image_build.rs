//! `cache-demo-ctl image` on every common setup, with stand-ins for minikube, docker, podman and kubectl on
//! `PATH` (tests/standins/: they record their calls and fail where the real tools fail, e.g. nerdctld refusing
//! BuildKit, a Docker CLI without buildx, the legacy builder refusing `RUN --mount`). Each test asserts what was
//! called, where the image ended up, and that the printed ID is that image's. The build context is this
//! repository, so the stand-ins read the real Containerfile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const IMAGE: &str = "cache-demo-app:latest";

fn standins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins")
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A machine: which of the four programs it has, and how they behave.
struct Machine {
    dir: tempfile::TempDir,
    env: BTreeMap<&'static str, String>,
}

struct Run {
    output: Output,
    calls: Vec<String>,
}

impl Machine {
    fn with(programs: &[&str]) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["bin", "state/stores"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for program in programs {
            std::os::unix::fs::symlink(standins().join(program), dir.path().join("bin").join(program)).unwrap();
        }
        let mut machine = Machine { dir, env: BTreeMap::new() };
        machine.set("STANDIN_KUBE_CONTEXT", "minikube");
        machine
    }

    fn set(&mut self, key: &'static str, value: &str) -> &mut Machine {
        self.env.insert(key, value.into());
        self
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `cache-demo-ctl image` with nothing on PATH but the stand-ins.
    fn image(&self, extra: &[&str]) -> Run {
        self.run_ctl(&[], extra)
    }

    /// `cache-demo-ctl --context CONTEXT image`.
    fn image_with_context(&self, context: &str) -> Run {
        self.run_ctl(&["--context", context], &[])
    }

    fn run_ctl(&self, global: &[&str], extra: &[&str]) -> Run {
        let id_file = self.state().join("image-id");
        let output = Command::new(env!("CARGO_BIN_EXE_cache-demo-ctl"))
            .args(global)
            .args(["image", "--image", IMAGE, "--id-file"])
            .arg(&id_file)
            .args(extra)
            .current_dir(repository_root())
            .env_clear()
            .env("PATH", self.dir.path().join("bin"))
            .env("STANDIN_STATE", self.state())
            .env("STANDIN_LIB", standins().join("lib.bash"))
            .envs(&self.env)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(self.state().join("calls.log")).unwrap_or_default();
        Run { output, calls: calls.lines().map(String::from).collect() }
    }

    /// The images in one store (node, host-docker, podman): name → ID.
    fn store(&self, name: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.state().join("stores").join(name)).unwrap_or_default();
        text.lines().filter_map(|l| l.split_once(' ')).map(|(r, i)| (r.to_owned(), i.to_owned())).collect()
    }

    fn id_file(&self) -> String {
        std::fs::read_to_string(self.state().join("image-id")).unwrap_or_default()
    }
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).trim().to_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn succeeded(&self) -> &Run {
        assert!(self.output.status.success(), "failed: {}\ncalls: {:#?}", self.stderr(), self.calls);
        self
    }

    /// The calls that build something.
    fn builds(&self) -> Vec<&str> {
        self.calls.iter().map(String::as_str).filter(|c| c.contains(" build ")).collect()
    }

    fn called(&self, prefix: &str) -> bool {
        self.calls.iter().any(|c| c.starts_with(prefix))
    }
}

/// The image is in `store` and the ID printed and written is its ID there.
fn assert_built_into(machine: &Machine, run: &Run, store: &str) {
    let images = machine.store(store);
    let id = images.get(IMAGE).unwrap_or_else(|| panic!("{IMAGE} not in the {store} store: {images:?}"));
    assert_eq!(run.stdout(), *id, "printed ID");
    assert_eq!(machine.id_file(), *id, "ID file");
    assert!(!run.called("builder pulled frontend"), "a frontend image was pulled: {:?}", run.calls);
}

#[test]
fn minikube_on_containerd_builds_inside_the_node_although_docker_env_works() {
    let mut machine = Machine::with(&["minikube", "docker", "podman", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_RUNTIME", "containerd");
    let run = machine.image(&[]);
    run.succeeded();

    assert_eq!(run.builds(), ["minikube -p minikube image build -f Containerfile -t cache-demo-app:latest ."]);
    assert!(!run.called("minikube -p minikube docker-env"), "docker-env was consulted: {:?}", run.calls);
    assert_built_into(&machine, &run, "node");
    assert!(machine.store("host-docker").is_empty() && machine.store("podman").is_empty());
    assert!(run.stderr().contains("containerd runtime"), "{}", run.stderr());

    // What the old decision ran fails here, as it does on a real containerd minikube: nerdctld has no BuildKit.
    let nerdctld = Command::new(standins().join("docker"))
        .args(["buildx", "build", "-f", "Containerfile", "-t", IMAGE, "."])
        .current_dir(repository_root())
        .env("DOCKER_HOST", "ssh://docker@127.0.0.1:32772")
        .env("STANDIN_STATE", machine.state())
        .env("STANDIN_LIB", standins().join("lib.bash"))
        .output()
        .unwrap();
    assert!(!nerdctld.status.success(), "the stand-in must refuse BuildKit on nerdctld");
}

#[test]
fn minikube_on_docker_with_buildx_builds_through_docker_env() {
    let mut machine = Machine::with(&["minikube", "docker", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_RUNTIME", "docker");
    let run = machine.image(&[]);
    run.succeeded();

    assert!(run.called("minikube -p minikube docker-env --shell none"), "{:?}", run.calls);
    let builds = run.builds();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert!(
        builds[0]
            .starts_with("docker buildx build --builder default --load -f Containerfile -t cache-demo-app:latest . ")
            && builds[0].contains("DOCKER_HOST=tcp://192.168.49.2:2376"),
        "{builds:?}"
    );
    assert_built_into(&machine, &run, "node");
    assert!(machine.store("host-docker").is_empty(), "built into this machine's Docker instead of the node's");
}

#[test]
fn minikube_on_docker_without_buildx_builds_inside_the_node() {
    let mut machine = Machine::with(&["minikube", "docker", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_RUNTIME", "docker").set("STANDIN_DOCKER_BUILDX", "0");
    let run = machine.image(&[]);
    run.succeeded();
    assert_eq!(run.builds(), ["minikube -p minikube image build -f Containerfile -t cache-demo-app:latest ."]);
    assert_built_into(&machine, &run, "node");
}

#[test]
fn minikube_on_cri_o_builds_inside_the_node() {
    let mut machine = Machine::with(&["minikube", "docker", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_RUNTIME", "crio");
    let run = machine.image(&[]);
    run.succeeded();
    assert_eq!(run.builds(), ["minikube -p minikube image build -f Containerfile -t cache-demo-app:latest ."]);
    assert_built_into(&machine, &run, "node");
}

#[test]
fn minikube_with_neither_docker_nor_podman_on_the_host_builds_inside_the_node() {
    let machine = Machine::with(&["minikube", "kubectl"]);
    let run = machine.image(&[]);
    run.succeeded();
    assert_eq!(run.builds(), ["minikube -p minikube image build -f Containerfile -t cache-demo-app:latest ."]);
    assert_built_into(&machine, &run, "node");
}

#[test]
fn an_older_minikube_that_does_not_name_the_runtime_asks_the_node() {
    let mut machine = Machine::with(&["minikube", "docker", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_RUNTIME", "").set("STANDIN_NODE_RUNTIME", "containerd://1.7.24");
    let run = machine.image(&[]);
    run.succeeded();
    assert!(run.called("kubectl --context minikube --request-timeout=10s get nodes"), "{:?}", run.calls);
    assert_eq!(run.builds(), ["minikube -p minikube image build -f Containerfile -t cache-demo-app:latest ."]);
    assert_built_into(&machine, &run, "node");
}

#[test]
fn a_minikube_older_than_1_35_saying_running_is_running() {
    let mut machine = Machine::with(&["minikube", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_STATUS", "Running");
    let run = machine.image(&[]);
    run.succeeded();
    assert_eq!(run.builds(), ["minikube -p minikube image build -f Containerfile -t cache-demo-app:latest ."]);
    assert_built_into(&machine, &run, "node");
}

#[test]
fn the_context_given_decides_over_kubectls_current_one() {
    let mut machine = Machine::with(&["minikube", "docker", "kubectl"]);
    machine.set("STANDIN_KUBE_CONTEXT", "kind-demo");
    let run = machine.image_with_context("minikube");
    run.succeeded();
    assert_built_into(&machine, &run, "node");
    assert!(!run.called("kubectl config current-context"), "{:?}", run.calls);
}

#[test]
fn a_named_minikube_profile_is_built_into() {
    let mut machine = Machine::with(&["minikube", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_PROFILE", "demo").set("STANDIN_KUBE_CONTEXT", "demo");
    let run = machine.image(&[]);
    run.succeeded();
    assert_eq!(run.builds(), ["minikube -p demo image build -f Containerfile -t cache-demo-app:latest ."]);
    assert_built_into(&machine, &run, "node");
    let unknown = machine.image(&["--minikube-profile", "other"]);
    assert!(!unknown.output.status.success(), "an unknown profile is not a cluster to build into");
}

#[test]
fn without_minikube_podman_builds_here_and_says_how_to_load_it_into_kind() {
    let mut machine = Machine::with(&["podman", "docker", "kubectl"]);
    machine.set("STANDIN_KUBE_CONTEXT", "kind-demo");
    let run = machine.image(&[]);
    run.succeeded();
    assert_eq!(run.builds(), ["podman build -f Containerfile -t cache-demo-app:latest ."]);
    assert_built_into(&machine, &run, "podman");
    assert!(run.stdout().starts_with("sha256:"), "podman's bare ID is normalized: {}", run.stdout());
    let stderr = run.stderr();
    assert!(stderr.contains("podman save -o /tmp/cache-demo-app.tar cache-demo-app:latest"), "{stderr}");
    assert!(stderr.contains("kind load image-archive /tmp/cache-demo-app.tar --name demo"), "{stderr}");
}

#[test]
fn without_minikube_a_docker_cli_without_buildx_uses_the_legacy_builder() {
    let mut machine = Machine::with(&["docker", "kubectl"]);
    machine.set("STANDIN_DOCKER_BUILDX", "0").set("STANDIN_KUBE_CONTEXT", "production");
    let run = machine.image(&[]);
    // Succeeds only because the Containerfile needs no BuildKit feature (the legacy builder refuses RUN --mount).
    run.succeeded();
    let builds = run.builds();
    assert!(builds.len() == 1 && builds[0].contains("DOCKER_BUILDKIT=0"), "{builds:?}");
    assert!(builds[0].starts_with("docker build -f Containerfile -t cache-demo-app:latest ."), "{builds:?}");
    assert_built_into(&machine, &run, "host-docker");
    let stderr = run.stderr();
    assert!(stderr.contains("docker tag cache-demo-app:latest REGISTRY/cache-demo-app:TAG"), "{stderr}");
}

#[test]
fn without_minikube_docker_with_buildx_builds_here() {
    let mut machine = Machine::with(&["docker"]);
    machine.env.remove("STANDIN_KUBE_CONTEXT");
    let run = machine.image(&[]);
    run.succeeded();
    assert_eq!(run.builds().len(), 1);
    assert!(run.builds()[0].starts_with("docker buildx build --load -f Containerfile"), "{:?}", run.calls);
    assert_built_into(&machine, &run, "host-docker");
}

#[test]
fn a_running_minikube_that_kubectl_does_not_point_at_is_left_alone() {
    let mut machine = Machine::with(&["minikube", "docker", "kubectl"]);
    machine.set("STANDIN_KUBE_CONTEXT", "kind-demo");
    let run = machine.image(&[]);
    run.succeeded();
    assert!(!run.called("minikube -p"), "{:?}", run.calls);
    assert_built_into(&machine, &run, "host-docker");
    assert!(machine.store("node").is_empty());
}

#[test]
fn a_stopped_minikube_fails_in_one_line_before_any_build() {
    let mut machine = Machine::with(&["minikube", "docker", "podman", "kubectl"]);
    machine.set("STANDIN_MINIKUBE_STATUS", "Stopped");
    let run = machine.image(&[]);
    assert!(!run.output.status.success());
    assert!(run.builds().is_empty(), "{:?}", run.calls);
    let stderr = run.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("minikube start --cpus 2 --memory 4g"), "{stderr}");
}

#[test]
fn with_nothing_to_build_with_it_says_what_to_install() {
    let machine = Machine::with(&["kubectl"]);
    let run = machine.image(&[]);
    assert!(!run.output.status.success());
    let stderr = run.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("install minikube") && stderr.contains("podman or docker"), "{stderr}");
}

#[test]
fn a_failed_build_fails_and_writes_no_id() {
    let mut machine = Machine::with(&["docker"]);
    machine.env.remove("STANDIN_KUBE_CONTEXT");
    machine.set("STANDIN_DOCKER_DAEMON", "0");
    let run = machine.image(&[]);
    assert!(!run.output.status.success());
    assert!(run.stderr().contains("Cannot connect to the Docker daemon"), "{}", run.stderr());
    assert!(run.stdout().is_empty() && machine.id_file().is_empty());
}

#[test]
fn the_containerfile_suits_every_builder_and_compiles_only_what_the_cluster_runs() {
    let root = repository_root();
    let containerfile = std::fs::read_to_string(root.join("Containerfile")).unwrap();
    assert!(!containerfile.contains("# syntax="), "a frontend image would be pulled on every cold builder");
    assert!(!containerfile.contains("--mount"), "RUN --mount needs BuildKit");
    let builds: Vec<&str> = containerfile.lines().filter(|l| l.contains("cargo build")).collect();
    assert!(!builds.is_empty());
    for build in builds {
        // The app, and cache-demo-ctl for operator mode; never the test harness or the load generator.
        assert!(build.contains("-p cache-demo -p cache-demo-ctl"), "{build}");
        assert!(!build.contains("--workspace") && !build.contains("testkit") && !build.contains("bench"), "{build}");
    }
    // cargo loads the whole workspace: the dependency layer needs every member's manifest.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest.split("members = [").nth(1).and_then(|m| m.split(']').next()).unwrap();
    for member in members.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()) {
        let copy = format!("COPY {member}/Cargo.toml {member}/");
        assert!(containerfile.contains(&copy), "the Containerfile lacks `{copy}`");
    }
}

/// `scripts/deploy-preflight.sh` (the first step of `make deploy`) with these programs on PATH.
fn preflight(programs: &[&str]) -> Output {
    let machine = Machine::with(&[]);
    for program in programs {
        // Any stand-in will do: the preflight only asks whether the program is there.
        std::os::unix::fs::symlink(standins().join("kubectl"), machine.dir.path().join("bin").join(program)).unwrap();
    }
    Command::new("/bin/bash")
        .arg(repository_root().join("scripts/deploy-preflight.sh"))
        .env_clear()
        .env("PATH", machine.dir.path().join("bin"))
        .output()
        .unwrap()
}

#[test]
fn make_deploy_names_everything_missing_in_one_line_before_compiling() {
    let out = preflight(&["minikube"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cargo") && stderr.contains("kubectl"), "{stderr}");
    assert!(!stderr.contains("minikube ("), "minikube is there: {stderr}");

    let out = preflight(&["cargo", "kubectl"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("minikube") && stderr.contains("podman"), "{stderr}");

    for builder in ["minikube", "docker", "podman"] {
        let out = preflight(&["cargo", "kubectl", builder]);
        assert!(out.status.success(), "{builder}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty() && out.stdout.is_empty());
    }
}
