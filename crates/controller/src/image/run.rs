//! The I/O half of the image build: what this machine has (programs on `PATH`, minikube's profiles, kubectl's
//! context) and running the build. Every probe is bounded in time; the build itself streams its output to
//! stderr, so stdout carries only the image ID.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{
    DockerCli, Host, LocalBuilder, Plan, PlanError, Runtime, build_command, choose_profile, find_in_image_list,
    normalize_id, parse_env_lines, parse_profiles, plan,
};

/// Upper bound of one look at the host (`minikube profile list` asks every cluster for its status).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("no {file} in {dir}: run this from the repository's root (or pass --build-context)")]
    NoContainerfile { file: String, dir: String },
    #[error("cannot run {program}: {source}")]
    Spawn { program: &'static str, source: std::io::Error },
    #[error("`{command}` failed ({status}): its output is above")]
    Failed { command: String, status: std::process::ExitStatus },
}

/// A finished build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub plan: Plan,
    /// The image's ID where it was built; None when the tool would not say.
    pub id: Option<String>,
}

/// Looks at what this machine has. `profile` is minikube's `-p` and `context` the kubeconfig context, when the
/// user gave them (the context kubectl points at otherwise).
pub async fn detect(profile: Option<&str>, context: Option<&str>) -> Host {
    let kube_context = match context {
        Some(context) => Some(context.to_owned()),
        None => probe("kubectl", &["config", "current-context"], &[]).await.filter(|c| !c.is_empty()),
    };
    let mut minikube = None;
    if installed("minikube")
        && let Some(json) = probe("minikube", &["profile", "list", "-o", "json"], &[]).await
    {
        let profiles = parse_profiles(&json).unwrap_or_default();
        minikube = choose_profile(profiles, profile, kube_context.as_deref());
    }
    // An older minikube may not name the runtime: the node does.
    if let Some(p) = minikube.as_mut().filter(|p| p.running && p.runtime.is_none()) {
        let jsonpath = "jsonpath={.items[0].status.nodeInfo.containerRuntimeVersion}";
        let args = ["--context", &p.name, "--request-timeout=10s", "get", "nodes", "-o", jsonpath];
        p.runtime = probe("kubectl", &args, &[]).await.filter(|r| !r.is_empty()).map(|r| Runtime::parse(&r));
    }
    let docker = match installed("docker") {
        true => Some(DockerCli { buildx: probe("docker", &["buildx", "version"], &[]).await.is_some() }),
        false => None,
    };
    Host { minikube, docker, podman: installed("podman"), kube_context }
}

/// Builds `image` from `containerfile` (relative to `context_dir`) as [`plan`] decides, then reads its ID.
pub async fn build(host: &Host, image: &str, containerfile: &str, context_dir: &Path) -> Result<Built, BuildError> {
    if !context_dir.join(containerfile).is_file() {
        let dir = context_dir.display().to_string();
        return Err(BuildError::NoContainerfile { file: containerfile.into(), dir });
    }
    let mut chosen = plan(host)?;
    let mut env = Vec::new();
    if let Plan::MinikubeDockerEnv { profile } = &chosen {
        match probe("minikube", &["-p", profile, "docker-env", "--shell", "none"], &[]).await {
            Some(text) => env = parse_env_lines(&text),
            None => {
                eprintln!("`minikube docker-env` failed: building with `minikube image build` instead");
                let runtime = Some(Runtime::Docker);
                chosen = Plan::MinikubeImageBuild { profile: profile.clone(), runtime };
            }
        }
    }
    if chosen == (Plan::Local { builder: LocalBuilder::DockerLegacy }) {
        env.push(("DOCKER_BUILDKIT".into(), "0".into()));
    }
    eprintln!("{}", chosen.describe(image));
    let (program, args) = build_command(&chosen, image, containerfile);
    let status = Command::new(program)
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(context_dir)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(std::io::stderr())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|source| BuildError::Spawn { program, source })?;
    if !status.success() {
        return Err(BuildError::Failed { command: format!("{program} {}", args.join(" ")), status });
    }
    let id = image_id(&chosen, image, &env).await;
    Ok(Built { plan: chosen, id })
}

/// The ID of the image just built, from the store it was built into.
async fn image_id(plan: &Plan, image: &str, env: &[(String, String)]) -> Option<String> {
    let inspect = ["image", "inspect", "--format", "{{.Id}}", image];
    let raw = match plan {
        Plan::MinikubeImageBuild { profile, .. } => {
            let json = probe("minikube", &["-p", profile, "image", "ls", "--format", "json"], &[]).await?;
            return find_in_image_list(&json, image);
        }
        Plan::MinikubeDockerEnv { .. } => probe("docker", &inspect, env).await?,
        Plan::Local { builder } => probe(builder.program(), &inspect, env).await?,
    };
    normalize_id(raw.lines().next().unwrap_or_default())
}

fn installed(program: &str) -> bool {
    which::which(program).is_ok()
}

/// The trimmed stdout of a command that exits 0 within [`PROBE_TIMEOUT`]; None otherwise (not installed,
/// failed, too slow).
async fn probe(program: &str, args: &[&str], env: &[(String, String)]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(PROBE_TIMEOUT, output).await {
        Ok(Ok(output)) if output.status.success() => Some(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
        _ => None,
    }
}
