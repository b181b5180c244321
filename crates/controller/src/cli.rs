//! The command line: clap definitions, turning flags into [`Settings`], progress drawn with indicatif, and the
//! text `up` and `status` print. No object is built and no API call is made here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::apply::{self, Progress, StatusRow, Step, WaitOptions};
use crate::crd;
use crate::image;
use crate::objects::{APP_PORT, Credentials, Objects, OperatorObjects};
use crate::operator;
use crate::render;
use crate::settings::{self, Settings, names};

#[derive(Debug, Parser)]
#[command(
    name = "cache-demo-ctl",
    version,
    about = "Deploys cache-demo (PostgreSQL, Redis and the app) to Kubernetes",
    long_about = "Deploys cache-demo (PostgreSQL, Redis and the app) to Kubernetes with server-side apply. \
                  Uses the usual kubeconfig ($KUBECONFIG or ~/.kube/config, current context) or the in-cluster \
                  service account."
)]
pub struct Cli {
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, global = true)]
    pub context: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply every object in order, wait until PostgreSQL, Redis and the app are ready, print the URL.
    Up {
        #[command(flatten)]
        deploy: DeployArgs,
        #[command(flatten)]
        wait: WaitArgs,
        /// Build --image from the Containerfile first, where the cluster's node can run it (`make deploy`).
        #[arg(long)]
        build: bool,
        /// Operator mode: apply the CacheDemo definition, the operator and a CacheDemo with these options; the
        /// operator deploys and keeps the rest (`make deploy-operator`).
        #[arg(long)]
        operator: bool,
        #[command(flatten)]
        build_args: BuildArgs,
    },
    /// Print the CacheDemo CustomResourceDefinition (operator mode) as YAML.
    Crd,
    /// Keep every CacheDemo resource of a namespace true (operator mode), until SIGTERM or Ctrl-C.
    Operator {
        /// Namespace whose CacheDemos to keep.
        #[arg(long, short = 'n', default_value = settings::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Where /healthz, /readyz and /metrics answer.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
        probe_addr: std::net::SocketAddr,
        /// Seconds between looks at a ready CacheDemo (pods, live cache figures).
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        requeue_secs: u64,
    },
    /// Build the app image where the cluster's node can run it and print its ID (`make image`).
    Image {
        /// Name of the image.
        #[arg(long, default_value = settings::DEFAULT_IMAGE)]
        image: String,
        #[command(flatten)]
        build_args: BuildArgs,
        /// Also write the image ID to this file.
        #[arg(long, value_name = "FILE")]
        id_file: Option<PathBuf>,
    },
    /// Delete the namespace (everything in it) and wait until it is gone.
    Down {
        /// Namespace to delete.
        #[arg(long, short = 'n', default_value = settings::DEFAULT_NAMESPACE)]
        namespace: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show every object and whether it is ready (exit code 1 if any is missing or not ready).
    Status {
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Print the objects as multi-document YAML, Secret values as placeholders.
    Render {
        #[command(flatten)]
        deploy: DeployArgs,
        /// Write namespace.yaml, postgres.yaml, redis.yaml, app.yaml and kustomization.yaml here instead, and
        /// operator mode's files (CRD, operator, CacheDemo) into DIR/operator.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Print operator mode's objects (CRD, operator with its RBAC, a CacheDemo) instead.
        #[arg(long)]
        operator: bool,
    },
}

/// Every option of the deployment, shared by `up`, `status` and `render`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Namespace of every object.
    #[arg(long, short = 'n', default_value = settings::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The app image (`make image` builds cache-demo-app:latest into minikube).
    #[arg(long, default_value = settings::DEFAULT_IMAGE)]
    pub image: String,
    /// ID of the image just built (`cache-demo-ctl image` prints it): a new ID rolls the app, the same one
    /// changes nothing. Leave it out for an image the cluster pulls from a registry.
    #[arg(long, value_name = "ID")]
    pub image_id: Option<String>,
    /// Pull policy of the app image. IfNotPresent uses an image built into the cluster and pulls others.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub image_pull_policy: String,
    /// Replicas of the app.
    #[arg(long, default_value_t = 1)]
    pub replicas: i32,
    /// Redis maxmemory, in Redis notation.
    #[arg(long, default_value = settings::DEFAULT_MAXMEMORY)]
    pub redis_maxmemory: String,
    /// Redis maxmemory-policy.
    #[arg(long, default_value = settings::DEFAULT_POLICY, value_parser = settings::REDIS_POLICIES)]
    pub redis_policy: String,
    /// Default TTL of cached entries (the app's CACHE_TTL_SECS).
    #[arg(long, default_value_t = settings::DEFAULT_TTL_SECS)]
    pub cache_ttl_secs: u64,
    /// Artificial delay of every database query in ms (the app's DB_DELAY_MS).
    #[arg(long, default_value_t = 0)]
    pub db_delay_ms: u64,
    /// Fixed NodePort of Service cache-demo-app.
    #[arg(long, default_value_t = settings::DEFAULT_NODE_PORT)]
    pub node_port: i32,
    /// PostgreSQL data: emptydir (reseeded on every pod start) or pvc (kept until `down`).
    #[arg(long, value_enum, default_value_t = StorageKind::Emptydir)]
    pub postgres_storage: StorageKind,
    /// Size of the PVC with --postgres-storage pvc.
    #[arg(long, default_value = settings::DEFAULT_PVC_SIZE)]
    pub postgres_pvc_size: String,
    /// PostgreSQL image (an official postgres image: it needs pg_trgm and /docker-entrypoint-initdb.d).
    #[arg(long, default_value = settings::DEFAULT_POSTGRES_IMAGE)]
    pub postgres_image: String,
    /// Redis image (official, 7 or newer).
    #[arg(long, default_value = settings::DEFAULT_REDIS_IMAGE)]
    pub redis_image: String,
    /// Run redis_exporter beside Redis for Prometheus (true or false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub redis_exporter: bool,
    /// redis_exporter image.
    #[arg(long, default_value = settings::DEFAULT_REDIS_EXPORTER_IMAGE)]
    pub redis_exporter_image: String,
}

/// Where the image is built from.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The Containerfile, relative to the build context.
    #[arg(long, default_value = "Containerfile")]
    pub containerfile: String,
    /// The build context: the repository's root.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub build_context: PathBuf,
    /// minikube profile to build into (default: the one kubectl points at, else minikube's active one).
    #[arg(long, value_name = "PROFILE")]
    pub minikube_profile: Option<String>,
}

impl BuildArgs {
    async fn build(&self, image: &str, context: Option<&str>) -> anyhow::Result<image::Built> {
        let host = image::detect(self.minikube_profile.as_deref(), context).await;
        let built = image::build(&host, image, &self.containerfile, &self.build_context).await?;
        match &built.id {
            Some(id) => eprintln!("built {image}: {id}"),
            None => eprintln!(
                "built {image}, but could not read its ID: a running app is not restarted by this build \
                 (kubectl rollout restart deploy/{} -n NAMESPACE does it)",
                names::APP
            ),
        }
        if !built.plan.on_node() {
            let builder = match &built.plan {
                image::Plan::Local { builder } => *builder,
                _ => image::LocalBuilder::DockerBuildx,
            };
            eprint!("{}", image::load_instructions(image, builder, host.kube_context.as_deref()));
        }
        Ok(built)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StorageKind {
    Emptydir,
    Pvc,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Seconds to wait for readiness (up) or deletion (down) before failing with an explanation.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

impl DeployArgs {
    /// The deployment these flags describe, as a `CacheDemo` spec would: the flags and the resource are one type.
    pub fn spec(&self) -> crd::CacheDemoSpec {
        let policy = crd::EvictionPolicy::parse(&self.redis_policy).unwrap_or_default();
        let pull = match self.image_pull_policy.as_str() {
            "Always" => crd::PullPolicy::Always,
            "Never" => crd::PullPolicy::Never,
            _ => crd::PullPolicy::IfNotPresent,
        };
        crd::CacheDemoSpec {
            image: self.image.clone(),
            image_id: self.image_id.clone().filter(|id| !id.is_empty()),
            image_pull_policy: pull,
            replicas: self.replicas,
            cache: crd::CacheSpec { ttl_secs: self.cache_ttl_secs, db_delay_ms: self.db_delay_ms },
            redis: crd::RedisSpec {
                maxmemory: self.redis_maxmemory.clone(),
                policy,
                image: self.redis_image.clone(),
                exporter: self.redis_exporter,
                exporter_image: self.redis_exporter_image.clone(),
            },
            postgres: crd::PostgresSpec {
                image: self.postgres_image.clone(),
                storage: match self.postgres_storage {
                    StorageKind::Emptydir => crd::StorageKind::EmptyDir,
                    StorageKind::Pvc => crd::StorageKind::Pvc,
                },
                pvc_size: self.postgres_pvc_size.clone(),
            },
            node_port: self.node_port,
        }
    }

    pub fn settings(&self) -> Result<Settings, settings::InvalidSetting> {
        let s = self.spec().settings(&self.namespace);
        s.validate()?;
        Ok(s)
    }
}

impl WaitArgs {
    pub fn options(&self) -> WaitOptions {
        WaitOptions { timeout: Duration::from_secs(self.timeout), ..WaitOptions::default() }
    }
}

/// Runs one command; `Ok(ExitCode)` for outcomes, `Err` for failures (printed by `main`).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Render { deploy, out_dir, operator } => {
            let settings = deploy.settings()?;
            let objects = Objects::build(&settings, &Credentials::Placeholders);
            let operator_objects = OperatorObjects::build(&settings, &deploy.spec());
            match (out_dir, operator) {
                (Some(dir), _) => {
                    for path in render::write_files(&objects, &operator_objects, &dir)? {
                        println!("wrote {path}");
                    }
                }
                (None, true) => print!("{}", render::operator_stream(&operator_objects)?),
                (None, false) => print!("{}", render::stream(&objects)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Operator { namespace, probe_addr, requeue_secs } => {
            let client = client(cli.context.as_deref()).await?;
            let mut config = operator::Config::new(&namespace);
            config.requeue = Duration::from_secs(requeue_secs.max(1));
            let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
            let ctx = operator::context(client, config, &instance);
            let stop = tokio_util::sync::CancellationToken::new();
            let probes = tokio::spawn(operator::serve_probes(ctx.clone(), probe_addr, stop.clone().cancelled_owned()));
            eprintln!("operator: keeping the CacheDemos of namespace {namespace}; probes and metrics on {probe_addr}");
            operator::run(ctx, shutdown_signal()).await;
            stop.cancel();
            probes.await.context("probe server")?.context("probe server")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crd => {
            print!("{}", render::crd()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Image { image, build_args, id_file } => {
            let built = build_args.build(&image, cli.context.as_deref()).await?;
            if let Some(id) = &built.id {
                println!("{id}");
            }
            if let Some(path) = id_file {
                let content = built.id.clone().unwrap_or_default();
                std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Up { mut deploy, wait, build, operator, build_args } => {
            let mut settings = deploy.settings()?;
            // Before a build of several minutes: a cluster that cannot be reached fails now.
            let client = client(cli.context.as_deref()).await?;
            if build {
                reachable(&client).await?;
                let built = build_args.build(&settings.image, cli.context.as_deref()).await?;
                if !built.plan.on_node() {
                    anyhow::bail!("the image is on this machine only: load or push it as shown above, then run up");
                }
                deploy.image_id = built.id;
                settings = deploy.settings()?;
            }
            let progress = Spinners::new();
            let report = match operator {
                true => apply::up_operator(&client, &settings, &deploy.spec(), &wait.options(), &progress).await?,
                false => apply::up(&client, &settings, &wait.options(), &progress).await?,
            };
            print!("{}", access_instructions(&settings, report.node_address.as_deref()));
            if operator {
                print!("{}", operator_instructions(&settings.namespace));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Down { namespace, wait } => {
            let client = client(cli.context.as_deref()).await?;
            let progress = Spinners::new();
            apply::down(&client, &namespace, &wait.options(), &progress).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { deploy } => {
            let settings = deploy.settings()?;
            let client = client(cli.context.as_deref()).await?;
            let rows = apply::status(&client, &settings).await?;
            print!("{}", status_table(&rows));
            Ok(if rows.iter().all(|r| r.ready) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Fails in one line when the cluster's API server does not answer.
async fn reachable(client: &Client) -> anyhow::Result<()> {
    const HINT: &str = "the cluster does not answer: is it started (`minikube start --cpus 2 --memory 4g`)?";
    match tokio::time::timeout(Duration::from_secs(15), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e).context(HINT),
        Err(_) => anyhow::bail!("{HINT} (no answer within 15s)"),
    }
}

/// A client for the kubeconfig's current (or given) context, or the in-cluster service account.
async fn client(context: Option<&str>) -> anyhow::Result<Client> {
    const HINT: &str = "no usable Kubernetes configuration (kubeconfig or in-cluster): start a cluster with \
                        `minikube start`, or point KUBECONFIG at one";
    let config = match context {
        Some(context) => {
            let kubeconfig = Kubeconfig::read().context(HINT)?;
            let options = KubeConfigOptions { context: Some(context.into()), ..KubeConfigOptions::default() };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.context(HINT)?
        }
        None => kube::Config::infer().await.context(HINT)?,
    };
    Client::try_from(config).context("cannot create a Kubernetes client")
}

/// What to open once everything is ready.
pub fn access_instructions(s: &Settings, node_address: Option<&str>) -> String {
    let ns = &s.namespace;
    let node_url = match node_address {
        Some(address) => format!("http://{address}:{}/", s.node_port),
        None => format!("NodePort {} on any node (`minikube ip` gives the address)", s.node_port),
    };
    format!(
        "\ncache-demo is ready in namespace {ns}.\n\
         \x20 Dashboard (NodePort):  {node_url}\n\
         \x20                        (macOS, Windows: `minikube service {app} -n {ns} --url` gives a reachable URL)\n\
         \x20 Or port-forward:       kubectl port-forward svc/{app} {APP_PORT}:{APP_PORT} -n {ns}\n\
         \x20                        then open http://127.0.0.1:{APP_PORT}/\n\
         \x20 Watch the cache:       kubectl exec -it deploy/{redis} -n {ns} -- redis-cli\n",
        app = names::APP,
        redis = names::REDIS,
    )
}

/// What to type to watch the operator at work.
pub fn operator_instructions(ns: &str) -> String {
    format!(
        "\x20 The operator keeps it:  kubectl get cachedemo -n {ns}        (READY, HIT RATIO, KEYS, MEMORY, URL)\n\
         \x20                        kubectl describe cachedemo {demo} -n {ns}   (conditions and events)\n\
         \x20                        kubectl logs -f deploy/{op} -n {ns}\n",
        demo = crate::objects::SAMPLE,
        op = crate::objects::OPERATOR,
    )
}

/// `KIND  NAME  STATUS` with a mark for ready rows.
pub fn status_table(rows: &[StatusRow]) -> String {
    let kind_width = rows.iter().map(|r| r.kind.len()).max().unwrap_or(4).max(4);
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("   {:kind_width$}  {:name_width$}  STATUS\n", "KIND", "NAME");
    for row in rows {
        let mark = if row.ready { "ok" } else { "--" };
        out.push_str(&format!("{mark} {:kind_width$}  {:name_width$}  {}\n", row.kind, row.name, row.state));
    }
    out
}

/// Progress on stderr: a spinner per object on a terminal, plain lines otherwise (CI logs, pipes).
pub struct Spinners {
    multi: Option<MultiProgress>,
}

impl Spinners {
    pub fn new() -> Self {
        Spinners { multi: std::io::stderr().is_terminal().then(MultiProgress::new) }
    }
}

impl Default for Spinners {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Spinners {
    fn start(&self, label: &str) -> Box<dyn Step> {
        match &self.multi {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style("{spinner:.cyan} {prefix:34} {msg}"));
                bar.set_prefix(label.to_owned());
                bar.enable_steady_tick(Duration::from_millis(100));
                Box::new(SpinnerStep(bar))
            }
            None => Box::new(PlainStep { label: label.to_owned(), last: Mutex::new(Instant::now()) }),
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

struct SpinnerStep(ProgressBar);

impl Step for SpinnerStep {
    fn update(&self, message: &str) {
        self.0.set_message(message.to_owned());
    }
    fn finish(&self, message: &str) {
        self.0.set_style(style("{prefix:.green.bold} {msg}"));
        self.0.set_prefix(format!("✔ {:34}", self.0.prefix()));
        self.0.finish_with_message(message.to_owned());
    }
    fn fail(&self, message: &str) {
        self.0.set_style(style("{prefix:.red.bold} {msg}"));
        self.0.set_prefix(format!("✘ {:34}", self.0.prefix()));
        self.0.abandon_with_message(message.to_owned());
    }
}

/// Without a terminal: a line when a step ends, and one every 10 s while it waits.
struct PlainStep {
    label: String,
    last: Mutex<Instant>,
}

impl Step for PlainStep {
    fn update(&self, message: &str) {
        let Ok(mut last) = self.last.lock() else { return };
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            eprintln!("  … {:34} {message}", self.label);
        }
    }
    fn finish(&self, message: &str) {
        eprintln!("  ✔ {:34} {message}", self.label);
    }
    fn fail(&self, message: &str) {
        eprintln!("  ✘ {:34} {}", self.label, message.lines().next().unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::PostgresStorage;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cache-demo-ctl").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_give_the_default_settings() {
        let Command::Up { deploy, wait, .. } = parse(&["up"]).command else { panic!("not up") };
        assert_eq!(deploy.settings().unwrap(), Settings::default());
        assert_eq!(wait.options().timeout, Duration::from_secs(300));
    }

    #[test]
    fn every_option_reaches_the_settings() {
        let cli = parse(&[
            "render",
            "-n",
            "demo",
            "--image",
            "registry.example/cache-demo:v1",
            "--replicas",
            "3",
            "--redis-maxmemory",
            "128mb",
            "--redis-policy",
            "allkeys-lfu",
            "--cache-ttl-secs",
            "30",
            "--db-delay-ms",
            "250",
            "--node-port",
            "30123",
            "--postgres-storage",
            "pvc",
            "--postgres-pvc-size",
            "2Gi",
            "--redis-exporter",
            "false",
        ]);
        let Command::Render { deploy, .. } = cli.command else { panic!("not render") };
        let s = deploy.settings().unwrap();
        assert_eq!(s.namespace, "demo");
        assert_eq!(s.image, "registry.example/cache-demo:v1");
        assert_eq!(s.replicas, 3);
        assert_eq!(s.redis_maxmemory, "128mb");
        assert_eq!(s.redis_policy, "allkeys-lfu");
        assert_eq!(s.cache_ttl_secs, 30);
        assert_eq!(s.db_delay_ms, 250);
        assert_eq!(s.node_port, 30123);
        assert_eq!(s.postgres_storage, PostgresStorage::Pvc { size: "2Gi".into() });
        assert!(!s.redis_exporter);
    }

    #[test]
    fn unknown_policy_and_bad_node_port_are_refused() {
        assert!(Cli::try_parse_from(["cache-demo-ctl", "up", "--redis-policy", "lru"]).is_err());
        let Command::Up { deploy, .. } = parse(&["up", "--node-port", "8000"]).command else { panic!("not up") };
        assert_eq!(deploy.settings().unwrap_err().option, "node port");
    }

    #[test]
    fn instructions_name_the_node_url_and_the_port_forward() {
        let text = access_instructions(&Settings::default(), Some("192.168.49.2"));
        assert!(text.contains("http://192.168.49.2:30080/"), "{text}");
        assert!(text.contains("kubectl port-forward svc/cache-demo-app 8000:8000 -n redis-demo"), "{text}");
        assert!(text.contains("http://127.0.0.1:8000/"), "{text}");
        assert!(text.contains("kubectl exec -it deploy/redis -n redis-demo -- redis-cli"), "{text}");
        assert!(text.contains("minikube service cache-demo-app -n redis-demo --url"), "{text}");
        let text = access_instructions(&Settings::default(), None);
        assert!(text.contains("minikube ip"), "{text}");
    }

    #[test]
    fn status_table_aligns_and_marks_rows() {
        let rows = [
            StatusRow { kind: "Namespace", name: "redis-demo".into(), state: "Active".into(), ready: true },
            StatusRow { kind: "Deployment", name: "cache-demo-app".into(), state: "0/1 ready".into(), ready: false },
        ];
        let table = status_table(&rows);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines[0], "   KIND        NAME            STATUS");
        assert_eq!(lines[1], "ok Namespace   redis-demo      Active");
        assert_eq!(lines[2], "-- Deployment  cache-demo-app  0/1 ready");
    }
}
