//! `cache-demo-ctl image` and `up --build`: builds the app image from `Containerfile` where the cluster's node
//! can run it, and reads the image's ID back (`up` writes it into the pod template, so a rebuilt image rolls the
//! app and the same image changes nothing).
//!
//! Where to build follows the node's container runtime, never whether `minikube docker-env` succeeds: on
//! containerd (minikube's default since 1.39) docker-env still succeeds but points the Docker CLI at a small
//! compatibility daemon that cannot run BuildKit builds. `minikube image build` works on every runtime; the
//! host's Docker CLI through docker-env is only a speed-up, for the docker runtime with the buildx plugin.
//!
//! This file decides (pure functions of what the host has); [`run`] looks at the host and runs the tools.

mod run;

use std::fmt;

use serde::Deserialize;

pub use run::{BuildError, Built, build, detect};

/// A node's container runtime, as minikube names it (`docker`, `containerd`, `crio`) or as the node reports it
/// (`containerd://1.7.24`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Other(String),
}

impl Runtime {
    pub fn parse(value: &str) -> Runtime {
        let name = value.split("://").next().unwrap_or_default().trim().to_ascii_lowercase();
        match name.as_str() {
            "docker" => Runtime::Docker,
            "containerd" => Runtime::Containerd,
            "crio" | "cri-o" => Runtime::CriO,
            _ => Runtime::Other(name),
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Other(name) => name,
        })
    }
}

/// One minikube profile (cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub running: bool,
    /// None when minikube did not say (then the node is asked).
    pub runtime: Option<Runtime>,
    /// `minikube profile` would name this one.
    pub active: bool,
}

/// The host's Docker CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DockerCli {
    /// The buildx plugin is installed (`docker buildx version` works): builds can use BuildKit.
    pub buildx: bool,
}

/// What the host has, as far as building the image goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// The minikube profile this deployment targets, if minikube is installed and has one.
    pub minikube: Option<Profile>,
    pub docker: Option<DockerCli>,
    pub podman: bool,
    /// kubectl's current context, when kubectl is installed and has one.
    pub kube_context: Option<String>,
}

/// Where and how the image is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `minikube image build`: inside the node, with the node's own builder, on any runtime.
    MinikubeImageBuild { profile: String, runtime: Option<Runtime> },
    /// The host's Docker CLI with BuildKit against the node's dockerd (`minikube docker-env`).
    MinikubeDockerEnv { profile: String },
    /// Built on this machine: the cluster must get it from here (loaded into its nodes or pushed).
    Local { builder: LocalBuilder },
}

impl Plan {
    /// True when the image ends up where the node runs it.
    pub fn on_node(&self) -> bool {
        !matches!(self, Plan::Local { .. })
    }

    /// One line saying what is about to happen.
    pub fn describe(&self, image: &str) -> String {
        match self {
            Plan::MinikubeImageBuild { profile, runtime } => {
                let runtime = runtime.as_ref().map(|r| format!(", {r} runtime")).unwrap_or_default();
                format!("building {image} inside minikube (profile {profile}{runtime}) with `minikube image build`")
            }
            Plan::MinikubeDockerEnv { profile } => {
                format!("building {image} in minikube's Docker (profile {profile}) with docker buildx (docker-env)")
            }
            Plan::Local { builder } => {
                format!("building {image} on this machine with {builder} (no running minikube for this cluster)")
            }
        }
    }
}

/// A builder on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalBuilder {
    Podman,
    /// `docker buildx build --load`.
    DockerBuildx,
    /// `docker build` with the legacy builder: the Containerfile needs no BuildKit feature.
    DockerLegacy,
}

impl LocalBuilder {
    /// The CLI that holds the image afterwards.
    pub fn program(self) -> &'static str {
        match self {
            LocalBuilder::Podman => "podman",
            LocalBuilder::DockerBuildx | LocalBuilder::DockerLegacy => "docker",
        }
    }
}

impl fmt::Display for LocalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LocalBuilder::Podman => "podman",
            LocalBuilder::DockerBuildx => "docker buildx",
            LocalBuilder::DockerLegacy => "docker (legacy builder: no buildx plugin)",
        })
    }
}

/// Why nothing can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "minikube (profile {profile}) is not running, and kubectl points at it: start it with \
         `minikube start --cpus 2 --memory 4g` and run this again"
    )]
    MinikubeStopped { profile: String },
    #[error(
        "nothing here can build the image: install minikube and run `minikube start --cpus 2 --memory 4g` \
         (https://minikube.sigs.k8s.io), or install podman or docker"
    )]
    NoBuilder,
}

/// Decides where to build. A running minikube that kubectl points at (or any running minikube when kubectl has
/// no context) gets the image on its node; otherwise the image is built here.
pub fn plan(host: &Host) -> Result<Plan, PlanError> {
    if let Some(profile) = &host.minikube {
        let targeted = host.kube_context.as_ref().is_none_or(|context| *context == profile.name);
        match (profile.running, targeted) {
            (true, true) => {
                let buildkit_cli = host.docker.is_some_and(|d| d.buildx);
                return Ok(if profile.runtime == Some(Runtime::Docker) && buildkit_cli {
                    Plan::MinikubeDockerEnv { profile: profile.name.clone() }
                } else {
                    Plan::MinikubeImageBuild { profile: profile.name.clone(), runtime: profile.runtime.clone() }
                });
            }
            (false, true) if host.kube_context.is_some() => {
                return Err(PlanError::MinikubeStopped { profile: profile.name.clone() });
            }
            _ => {}
        }
    }
    let builder = match (host.podman, host.docker) {
        (true, _) => LocalBuilder::Podman,
        (false, Some(DockerCli { buildx: true })) => LocalBuilder::DockerBuildx,
        (false, Some(DockerCli { buildx: false })) => LocalBuilder::DockerLegacy,
        (false, None) => return Err(PlanError::NoBuilder),
    };
    Ok(Plan::Local { builder })
}

/// The command that builds: program and arguments, run in the build context directory.
pub fn build_command(plan: &Plan, image: &str, containerfile: &str) -> (&'static str, Vec<String>) {
    let args = |prefix: &[&str]| {
        let mut args: Vec<String> = prefix.iter().map(|a| a.to_string()).collect();
        args.extend(["-f", containerfile, "-t", image, "."].map(String::from));
        args
    };
    match plan {
        Plan::MinikubeImageBuild { profile, .. } => ("minikube", args(&["-p", profile, "image", "build"])),
        // The default builder is the daemon DOCKER_HOST names (minikube's), whatever `docker buildx use` chose.
        Plan::MinikubeDockerEnv { .. } => ("docker", args(&["buildx", "build", "--builder", "default", "--load"])),
        Plan::Local { builder: LocalBuilder::Podman } => ("podman", args(&["build"])),
        Plan::Local { builder: LocalBuilder::DockerBuildx } => ("docker", args(&["buildx", "build", "--load"])),
        Plan::Local { builder: LocalBuilder::DockerLegacy } => ("docker", args(&["build"])),
    }
}

/// `minikube profile list -o json`, as far as it is read here.
#[derive(Debug, Deserialize)]
struct ProfileList {
    #[serde(default)]
    valid: Vec<ProfileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProfileEntry {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    active: bool,
    config: Option<ProfileConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProfileConfig {
    kubernetes_config: Option<KubernetesConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KubernetesConfig {
    #[serde(default)]
    container_runtime: String,
}

/// The profiles of `minikube profile list -o json`.
pub fn parse_profiles(json: &str) -> Result<Vec<Profile>, serde_json::Error> {
    let list: ProfileList = serde_json::from_str(json)?;
    Ok(list
        .valid
        .into_iter()
        .map(|p| {
            let runtime = p.config.and_then(|c| c.kubernetes_config).map(|k| k.container_runtime);
            Profile {
                name: p.name,
                running: is_running(&p.status),
                runtime: runtime.filter(|r| !r.is_empty()).map(|r| Runtime::parse(&r)),
                active: p.active,
            }
        })
        .collect())
}

/// minikube's word for a running cluster: `Running` before 1.35, `OK` (`HAppy`, `Degraded` with several
/// control planes) since.
pub fn is_running(status: &str) -> bool {
    matches!(status, "Running" | "OK" | "HAppy" | "Degraded")
}

/// The profile meant: the one asked for, else the one kubectl points at, else minikube's active one, else
/// `minikube`, else the only one.
pub fn choose_profile(profiles: Vec<Profile>, asked: Option<&str>, kube_context: Option<&str>) -> Option<Profile> {
    let find = |name: &str| profiles.iter().find(|p| p.name == name).cloned();
    if let Some(name) = asked {
        return find(name);
    }
    kube_context
        .and_then(find)
        .or_else(|| profiles.iter().find(|p| p.active).cloned())
        .or_else(|| find("minikube"))
        .or_else(|| (profiles.len() == 1).then(|| profiles[0].clone()))
}

/// `KEY=VALUE` lines of `minikube docker-env --shell none`.
pub fn parse_env_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .filter(|(key, _)| !key.is_empty() && key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
        .collect()
}

/// An image reference in full (`cache-demo-app:latest` → `docker.io/library/cache-demo-app:latest`), the form
/// containerd lists images in, so references from different tools compare equal.
pub fn full_reference(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let mut full = match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => name.to_owned(),
        Some(_) => format!("docker.io/{name}"),
    };
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    if let Some(digest) = digest {
        full.push('@');
        full.push_str(digest);
    }
    full
}

/// An image ID as tools print it (`sha256:<hex>`, or bare hex from podman and some runtimes) in one form.
pub fn normalize_id(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let id = if raw.contains(':') { raw.to_owned() } else { format!("sha256:{raw}") };
    crate::settings::is_image_id(&id).then_some(id)
}

/// `minikube image ls --format json`, as far as it is read here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedImage {
    id: String,
    #[serde(default)]
    repo_tags: Vec<String>,
}

/// The ID of `image` in `minikube image ls --format json`. An unqualified name may be listed under docker.io
/// (containerd) or under `localhost/` (cri-o, where minikube builds with podman).
pub fn find_in_image_list(json: &str, image: &str) -> Option<String> {
    let images: Vec<ListedImage> = serde_json::from_str(json).ok()?;
    let mut wanted = vec![full_reference(image)];
    if !image.contains('/') {
        wanted.push(full_reference(&format!("localhost/{image}")));
    }
    images
        .iter()
        .find(|i| i.repo_tags.iter().any(|t| wanted.contains(&full_reference(t))))
        .and_then(|i| normalize_id(&i.id))
}

/// How to get an image built on this machine into the cluster kubectl points at.
pub fn load_instructions(image: &str, builder: LocalBuilder, kube_context: Option<&str>) -> String {
    let tool = builder.program();
    let archive = "/tmp/cache-demo-app.tar";
    let save = format!("{tool} save -o {archive} {image}");
    let steps = match kube_context {
        Some(context) if context.starts_with("kind-") => {
            let cluster = &context["kind-".len()..];
            match builder {
                LocalBuilder::Podman => format!("{save} && kind load image-archive {archive} --name {cluster}"),
                _ => format!("kind load docker-image {image} --name {cluster}"),
            }
        }
        Some(context) if context.starts_with("k3d-") => {
            let cluster = &context["k3d-".len()..];
            match builder {
                LocalBuilder::Podman => format!("{save} && k3d image import {archive} -c {cluster}"),
                _ => format!("k3d image import {image} -c {cluster}"),
            }
        }
        _ => {
            let remote = "REGISTRY/cache-demo-app:TAG";
            return format!(
                "The image is on this machine only. Push it to a registry your cluster pulls from:\n\
                 \x20 {tool} tag {image} {remote} && {tool} push {remote}\n\
                 then deploy it: cache-demo-ctl up --image {remote} --image-pull-policy Always\n"
            );
        }
    };
    format!(
        "The image is on this machine only. Load it into the cluster's nodes ({}):\n  {steps}\n\
         then deploy it: cache-demo-ctl up --image {image}\n",
        kube_context.unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(runtime: &str, running: bool) -> Profile {
        Profile { name: "minikube".into(), running, runtime: Some(Runtime::parse(runtime)), active: true }
    }

    fn host(minikube: Option<Profile>, docker: Option<bool>, podman: bool) -> Host {
        Host {
            minikube,
            docker: docker.map(|buildx| DockerCli { buildx }),
            podman,
            kube_context: Some("minikube".into()),
        }
    }

    fn image_build(runtime: &str) -> Plan {
        Plan::MinikubeImageBuild { profile: "minikube".into(), runtime: Some(Runtime::parse(runtime)) }
    }

    #[test]
    fn containerd_and_cri_o_build_inside_minikube_whatever_the_host_has() {
        for runtime in ["containerd", "crio"] {
            for docker in [None, Some(false), Some(true)] {
                for podman in [false, true] {
                    let h = host(Some(profile(runtime, true)), docker, podman);
                    assert_eq!(plan(&h), Ok(image_build(runtime)), "{h:?}");
                }
            }
        }
    }

    #[test]
    fn the_docker_runtime_uses_docker_env_only_with_buildx() {
        let fast = Plan::MinikubeDockerEnv { profile: "minikube".into() };
        assert_eq!(plan(&host(Some(profile("docker", true)), Some(true), false)), Ok(fast));
        assert_eq!(plan(&host(Some(profile("docker", true)), Some(false), true)), Ok(image_build("docker")));
        assert_eq!(plan(&host(Some(profile("docker", true)), None, false)), Ok(image_build("docker")));
    }

    #[test]
    fn an_unknown_runtime_builds_inside_minikube() {
        let unknown = Profile { runtime: None, ..profile("docker", true) };
        let expected = Plan::MinikubeImageBuild { profile: "minikube".into(), runtime: None };
        assert_eq!(plan(&host(Some(unknown), Some(true), false)), Ok(expected));
    }

    #[test]
    fn without_a_running_minikube_the_image_is_built_here() {
        let mut h = host(None, Some(true), true);
        h.kube_context = Some("kind-demo".into());
        assert_eq!(plan(&h), Ok(Plan::Local { builder: LocalBuilder::Podman }));
        h.podman = false;
        assert_eq!(plan(&h), Ok(Plan::Local { builder: LocalBuilder::DockerBuildx }));
        h.docker = Some(DockerCli { buildx: false });
        assert_eq!(plan(&h), Ok(Plan::Local { builder: LocalBuilder::DockerLegacy }));
        h.docker = None;
        assert_eq!(plan(&h), Err(PlanError::NoBuilder));
        // A running minikube that kubectl does not point at is not where the deployment goes.
        h.minikube = Some(profile("containerd", true));
        h.docker = Some(DockerCli { buildx: true });
        assert_eq!(plan(&h), Ok(Plan::Local { builder: LocalBuilder::DockerBuildx }));
    }

    #[test]
    fn a_stopped_minikube_that_kubectl_points_at_fails_before_building() {
        let h = host(Some(profile("containerd", false)), Some(true), true);
        let err = plan(&h).unwrap_err();
        assert_eq!(err, PlanError::MinikubeStopped { profile: "minikube".into() });
        assert!(err.to_string().contains("minikube start --cpus 2 --memory 4g"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1);
    }

    #[test]
    fn build_commands_name_the_file_the_tag_and_the_context() {
        let (program, args) = build_command(&image_build("containerd"), "cache-demo-app:latest", "Containerfile");
        assert_eq!(program, "minikube");
        assert_eq!(
            args,
            ["-p", "minikube", "image", "build", "-f", "Containerfile", "-t", "cache-demo-app:latest", "."]
        );
        let (program, args) = build_command(&Plan::Local { builder: LocalBuilder::DockerLegacy }, "x:1", "C");
        assert_eq!((program, args.join(" ")), ("docker", "build -f C -t x:1 .".to_owned()));
    }

    #[test]
    fn every_word_minikube_uses_for_running_counts() {
        for status in ["Running", "OK", "HAppy", "Degraded"] {
            assert!(is_running(status), "{status}");
        }
        for status in ["Stopped", "Paused", "Error", "Unknown", "Starting"] {
            assert!(!is_running(status), "{status}");
        }
    }

    #[test]
    fn profiles_are_read_from_minikube_json() {
        let json = r#"{"invalid":[],"valid":[
            {"Name":"minikube","Status":"Running","Active":true,
             "Config":{"Name":"minikube","KubernetesConfig":{"KubernetesVersion":"v1.34.0","ContainerRuntime":"containerd"}}},
            {"Name":"old","Status":"Stopped","Config":{"KubernetesConfig":{"ContainerRuntime":"docker"}}},
            {"Name":"bare","Status":"Running"}]}"#;
        let profiles = parse_profiles(json).unwrap();
        assert_eq!(profiles[0], profile("containerd", true));
        assert_eq!(profiles[1].runtime, Some(Runtime::Docker));
        assert!(!profiles[1].running);
        assert_eq!(profiles[2].runtime, None);
        assert!(parse_profiles("not json").is_err());
    }

    #[test]
    fn the_profile_follows_the_flag_then_kubectl_then_minikube() {
        let named = |name: &str, active: bool| Profile { name: name.into(), active, ..profile("docker", true) };
        let all = vec![named("minikube", false), named("dev", true), named("other", false)];
        let pick = |asked, context| choose_profile(all.clone(), asked, context).map(|p| p.name);
        assert_eq!(pick(Some("other"), Some("dev")).as_deref(), Some("other"));
        assert_eq!(pick(Some("missing"), None), None);
        assert_eq!(pick(None, Some("other")).as_deref(), Some("other"));
        assert_eq!(pick(None, Some("kind-x")).as_deref(), Some("dev"));
        let inactive = vec![named("minikube", false), named("dev", false)];
        assert_eq!(choose_profile(inactive, None, None).map(|p| p.name).as_deref(), Some("minikube"));
        assert_eq!(choose_profile(vec![named("solo", false)], None, None).map(|p| p.name).as_deref(), Some("solo"));
    }

    #[test]
    fn runtimes_parse_from_minikube_and_from_the_node() {
        assert_eq!(Runtime::parse("containerd://1.7.24"), Runtime::Containerd);
        assert_eq!(Runtime::parse("docker://28.1.1"), Runtime::Docker);
        assert_eq!(Runtime::parse("cri-o://1.32.0"), Runtime::CriO);
        assert_eq!(Runtime::parse("crio"), Runtime::CriO);
        assert_eq!(Runtime::parse("kata"), Runtime::Other("kata".into()));
    }

    #[test]
    fn docker_env_lines_become_variables() {
        let text = "DOCKER_TLS_VERIFY=1\nDOCKER_HOST=tcp://192.168.49.2:2376\nDOCKER_CERT_PATH=\"/root/.minikube/certs\"\n\
                    # To point your shell to minikube's docker-daemon, run:\n";
        let vars = parse_env_lines(text);
        assert_eq!(vars.len(), 3);
        assert_eq!(vars[1], ("DOCKER_HOST".into(), "tcp://192.168.49.2:2376".into()));
        assert_eq!(vars[2].1, "/root/.minikube/certs");
    }

    #[test]
    fn references_compare_in_full() {
        assert_eq!(full_reference("cache-demo-app:latest"), "docker.io/library/cache-demo-app:latest");
        assert_eq!(full_reference("cache-demo-app"), "docker.io/library/cache-demo-app:latest");
        assert_eq!(full_reference("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(full_reference("localhost/cache-demo-app:latest"), "localhost/cache-demo-app:latest");
        assert_eq!(full_reference("registry.example:5000/app"), "registry.example:5000/app:latest");
    }

    #[test]
    fn image_ids_are_found_in_minikube_lists_and_normalized() {
        let hex = "0123456789abcdef".repeat(4);
        let json = format!(
            r#"[{{"id":"{}","repoDigests":[],"repoTags":["registry.k8s.io/pause:3.10"],"size":"1"}},
                {{"id":"{hex}","repoDigests":[],"repoTags":["docker.io/library/cache-demo-app:latest"],"size":"2"}}]"#,
            "f".repeat(64)
        );
        assert_eq!(find_in_image_list(&json, "cache-demo-app:latest"), Some(format!("sha256:{hex}")));
        assert_eq!(find_in_image_list(&json, "cache-demo-app:v2"), None);
        let crio = format!(r#"[{{"id":"sha256:{hex}","repoTags":["localhost/cache-demo-app:latest"]}}]"#);
        assert_eq!(find_in_image_list(&crio, "cache-demo-app:latest"), Some(format!("sha256:{hex}")));
        assert_eq!(normalize_id(&format!("sha256:{hex}\n")), Some(format!("sha256:{hex}")));
        assert_eq!(normalize_id("Error: no such image"), None);
    }

    #[test]
    fn instructions_fit_the_cluster() {
        let kind = load_instructions("cache-demo-app:latest", LocalBuilder::DockerBuildx, Some("kind-demo"));
        assert!(kind.contains("kind load docker-image cache-demo-app:latest --name demo"), "{kind}");
        let k3d = load_instructions("cache-demo-app:latest", LocalBuilder::Podman, Some("k3d-dev"));
        assert!(k3d.contains("podman save -o /tmp/cache-demo-app.tar cache-demo-app:latest"), "{k3d}");
        assert!(k3d.contains("k3d image import /tmp/cache-demo-app.tar -c dev"), "{k3d}");
        let other = load_instructions("cache-demo-app:latest", LocalBuilder::DockerLegacy, Some("prod"));
        assert!(other.contains("docker push REGISTRY/cache-demo-app:TAG"), "{other}");
        assert!(other.contains("cache-demo-ctl up --image REGISTRY/cache-demo-app:TAG"), "{other}");
    }
}
