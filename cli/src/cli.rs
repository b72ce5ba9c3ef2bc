//! Command-line interface: what a user can type, with help and examples.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::EndpointUrl;

#[derive(Debug, Parser)]
#[command(
    name = "shopctl",
    version,
    about = "Stand up the shop platform and prove it stays up",
    long_about = "Stand up the shop platform and prove it stays up.\n\n\
        shopctl reads environments/<env>.toml, renders Terraform and Kubernetes manifests from \
        templates/, and runs Terraform against AWS or an AWS-compatible API. Locally, it runs \
        the whole HA topology (etcd, Patroni/PostgreSQL, HAProxy, Redis, RabbitMQ, Kafka, the \
        app, nginx) as supervised processes.",
    after_help = "Examples:\n  shopctl up local                  the HA topology as processes on 127.0.0.1\n  \
        shopctl status local              its components and PostgreSQL cluster\n  \
        shopctl render staging            render into .shopctl/staging/rendered\n  \
        shopctl plan staging              what Terraform would change\n  \
        shopctl apply staging --yes       apply without asking (CI)\n  \
        shopctl status staging --json     what exists in AWS\n  \
        shopctl doctor                    which tools are installed"
)]
pub struct Cli {
    /// Project directory (holding environments/ and templates/); default: the
    /// nearest such directory from here upwards.
    #[arg(short = 'C', long = "project-dir", global = true, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render Terraform and Kubernetes templates for environments.
    #[command(
        after_help = "Examples:\n  shopctl render staging\n  shopctl render --all --out rendered\n  \
        shopctl render production --out rendered --check   # CI: fail when rendered/ is stale"
    )]
    Render(RenderArgs),

    /// Bring an environment up: for local, the HA topology as supervised processes (or, with
    /// --aws, the AWS emulator and the Terraform stack on it); for others, the whole path from
    /// Terraform to a smoke test, resumable.
    #[command(
        after_help = "Local: starts, on 127.0.0.1 and the ports of [local.ports]: etcd-1..3, Patroni pg-1..3 \
        (PostgreSQL 15, one leader and two streaming replicas, both synchronous), HAProxy (write port -> \
        leader, read port -> replicas), Redis, RabbitMQ, Kafka (tansu), an SMTP sink, the app's workers \
        and replicas, and nginx in front. A supervisor (`shopctl supervise`) keeps them running; `up` \
        waits until each answers its readiness probe. Running it again reuses what runs.\n\n\
        With --aws: start the AWS emulator (moto_server) on aws.endpoint_url unless one answers there, \
        apply the Terraform stack to it (about 75 s) and report what exists.\n\n\
        Other environments, in six steps: terraform (plan and apply), image-build, image-push, \
        kubeconfig (EKS DescribeCluster), deploy, smoke (GET https://<domain>/readyz and /healthz). \
        Asks once first; without a terminal, --yes is required. Progress is kept in \
        .shopctl/<env>/up.json: a re-run skips every step done with the same inputs and continues \
        from the first one not done; --until stops after a step; --restart forgets what was done. \
        Against an AWS emulator (aws.endpoint_url or --aws-endpoint) the EKS cluster has no \
        Kubernetes API, so deploy and smoke need --kubeconfig, and image-push needs --registry.\n\n\
        Examples:\n  \
        shopctl up local\n  shopctl up local --app-bin target/release/app\n  shopctl up local --aws\n  \
        shopctl up staging\n  shopctl up staging --until image-push --yes\n  \
        shopctl up staging --aws-endpoint http://127.0.0.1:5000 --registry http://127.0.0.1:5001 --until kubeconfig"
    )]
    Up(UpArgs),

    /// Show the local topology's logs: the last lines of one component's log.
    #[command(
        after_help = "Examples:\n  shopctl logs local pg-1\n  shopctl logs local app-1 -n 200\n  shopctl logs local nginx -f"
    )]
    Logs(LogsArgs),

    /// The local topology's process supervisor (started by `up`; not for direct use).
    #[command(hide = true)]
    Supervise(SuperviseArgs),

    /// Take an environment down: for local, stop the topology, destroy the emulator's stack if
    /// `up --aws` created one, and stop what `up` started; for others, delete the Kubernetes
    /// objects, then destroy the infrastructure.
    #[command(
        after_help = "Asks first (production: type its name); without a terminal, --yes is required.\n\n\
        Other environments: deletes the Kubernetes objects shopctl deployed (skipped when the EKS \
        cluster does not exist, or when the AWS API is an emulator and no --kubeconfig is given), \
        then Terraform destroy, then forgets the progress of `up`.\n\nExamples:\n  \
        shopctl down local --yes\n  shopctl down local --yes --purge   # also delete .shopctl/local\n  \
        shopctl down staging"
    )]
    Down(DownArgs),

    /// Check rendered Terraform offline: `terraform fmt -check` and `terraform validate`.
    #[command(after_help = "Examples:\n  shopctl validate staging\n  shopctl validate --all")]
    Validate(ValidateArgs),

    /// Check that every pod of an environment schedules on its EKS node groups.
    #[command(
        after_help = "Places every rendered workload (requests, replicas at their minimum and at the HPA \
        maximum, required pod anti-affinity, DoNotSchedule topology spread, DaemonSets) and the cluster \
        add-ons on the node groups' nodes (allocatable CPU and memory by EKS's kube-reserved rules, pods \
        per node from ENI limits), twice: node groups at min with minimum replicas, and at max with HPA \
        maxima. Prints per node allocatable, requested and headroom; exits 1 when a pod does not fit, \
        naming it, why, and the smallest config change that fits. `render`, `plan` and `deploy` run the \
        same check first.\n\nExamples:\n  shopctl capacity staging\n  shopctl capacity production --json"
    )]
    Capacity(CapacityArgs),

    /// Show what Terraform would change in an environment.
    #[command(
        after_help = "Examples:\n  shopctl plan staging\n  shopctl plan local --aws-endpoint http://127.0.0.1:5000"
    )]
    Plan(TerraformArgs),

    /// Create or update an environment's infrastructure with Terraform.
    #[command(
        after_help = "Asks before changing anything; without a terminal, --yes is required. \
        Production asks you to type its name.\n\nExamples:\n  shopctl apply staging\n  shopctl apply staging --yes"
    )]
    Apply(ChangeArgs),

    /// Destroy an environment's infrastructure.
    #[command(
        after_help = "Asks before changing anything; without a terminal, --yes is required. \
        Production asks you to type its name.\n\nExamples:\n  shopctl destroy staging\n  shopctl destroy staging --yes"
    )]
    Destroy(ChangeArgs),

    /// Report an environment: for local, every process and the PostgreSQL cluster; for
    /// others, VPC, subnets, cluster, node groups, repository and buckets from AWS.
    #[command(
        after_help = "For local: each component (state, pid, restarts, uptime, last exit) and the \
        Patroni cluster (role, state, timeline, lag); --aws-endpoint (or --aws) reports its AWS \
        emulator instead.\n\nExamples:\n  shopctl status local\n  shopctl status staging --json"
    )]
    Status(StatusArgs),

    /// Check the tools shopctl needs and say how to install what is missing.
    Doctor(DoctorArgs),

    /// List the environments defined under environments/.
    Envs,

    /// Background jobs on RabbitMQ: dead-lettered jobs, listed and replayed.
    #[command(subcommand)]
    Jobs(JobsCommand),

    /// The app's OCI image: build it (no container engine needed), push it, list a repository.
    #[command(subcommand)]
    Image(ImageCommand),

    /// Write a kubeconfig for an environment's EKS cluster (no aws CLI needed).
    #[command(
        after_help = "The cluster's endpoint and CA come from EKS DescribeCluster; the kubeconfig's user runs \
        `shopctl eks-token <env>` for a fresh token (a presigned STS GetCallerIdentity, valid 15 minutes), \
        so the file holds no secret. Default path: .shopctl/<env>/kubeconfig (mode 600).\n\nExamples:\n  \
        shopctl kubeconfig staging\n  export KUBECONFIG=$(shopctl kubeconfig staging)\n  \
        shopctl kubeconfig staging --out ~/.kube/shop-staging"
    )]
    Kubeconfig(KubeconfigArgs),

    /// Print a fresh EKS token as a Kubernetes ExecCredential (the kubeconfig's exec plugin).
    #[command(hide = true)]
    EksToken(EksTokenArgs),

    /// Apply the rendered Kubernetes manifests to the environment's cluster.
    #[command(
        after_help = "Server-side apply (field manager `shopctl`) in dependency order: namespace, \
        storage, RBAC, config and Services; the stateful sets (PostgreSQL, Kafka, RabbitMQ, Redis), \
        waited for; the Jobs (topics, migrations), waited for; the app and workers, waited for; \
        autoscalers, ingress, backups. Generates the Secrets the pods read when they are missing \
        (never overwrites one). Prunes objects of the environment (label \
        shop.example.com/environment) that are no longer rendered. Records a revision in the \
        cluster; a rollout not ready within --timeout is rolled back to the last good revision \
        unless --no-rollback.\n\nImage: the one `shopctl image push <env>` pushed last, or --image. \
        Role ARNs: Terraform's outputs.\n\nExamples:\n  shopctl deploy staging --dry-run\n  \
        shopctl deploy staging --yes\n  shopctl deploy production --image 1234.dkr.ecr.eu-west-1.amazonaws.com/shop-app@sha256:...\n  \
        shopctl deploy staging --no-rollback --timeout 900"
    )]
    Deploy(DeployArgs),

    /// List the revisions deployed to an environment's cluster.
    #[command(
        after_help = "Examples:\n  shopctl history staging\n  shopctl history staging --json"
    )]
    History(HistoryArgs),

    /// Deploy an earlier revision again (default: the last good one before the current).
    #[command(
        after_help = "Re-applies the manifests that revision recorded, as a new revision. Asks \
        first; without a terminal, --yes is required.\n\nExamples:\n  shopctl rollback staging\n  \
        shopctl rollback staging --to 4 --yes"
    )]
    Rollback(RollbackArgs),

    /// Inject a database fault under a workload and prove what happened (destructive).
    #[command(
        name = "failover-test",
        after_help = "Runs checkouts through the API and numbered ledger writes through the write \
        port, injects the fault into the Patroni leader, then measures the outage and verifies zero \
        loss, no split brain, convergence and the shop's invariants. Reports go to \
        reports/<timestamp>-<mode>/ (report.json, report.md, timeline.svg). Exits 1 when a check \
        fails or the outage exceeds its threshold. It kills processes: asks first; without a \
        terminal, --yes is required.\n\nOn Kubernetes the Patroni members are found by the primary \
        Service's labels and reached through port-forwards on 127.0.0.1; delete-pod deletes the leader's pod \
        with no grace period, drain-node cordons its node and evicts its pods (disruption budgets hold), \
        then uncordons it. The API workload goes to https://<domain>.\n\nExamples:\n  \
        shopctl failover-test local --mode switchover\n  \
        shopctl failover-test local --mode all --runs 3 --yes --json\n  \
        shopctl failover-test staging --mode delete-pod --yes"
    )]
    FailoverTest(FailoverTestArgs),
}

/// Where the cluster is and how long to wait for it.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    /// The kubeconfig to use (default: .shopctl/<env>/kubeconfig, written by `shopctl kubeconfig`).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Show what would change (server-side dry run) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Keep a failed rollout as it is (for debugging); print the command that rolls it back.
    #[arg(long)]
    pub no_rollback: bool,

    /// Seconds every workload together may take to become ready.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,

    /// The app image, `repository@sha256:...` (default: the one `image push` pushed last).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,

    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The revision to return to (default: the last good one before the current).
    #[arg(long, value_name = "REV")]
    pub to: Option<u32>,

    /// Seconds every workload together may take to become ready.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,

    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct FailoverTestArgs {
    /// The environment: `local` (processes) or one deployed to Kubernetes.
    #[arg(value_name = "ENV")]
    pub env: String,

    /// The fault to inject; `all` runs every one of the place, one after another
    /// (local: switchover, kill-postgres, kill-node, freeze-node; Kubernetes:
    /// switchover, delete-pod, drain-node).
    #[arg(long, value_enum)]
    pub mode: crate::failover::Mode,

    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(short, long)]
    pub yes: bool,

    /// Repeat the whole mode this many times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub runs: usize,

    /// Print the reports as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// A JSON failover target instead of the environment's topology (for tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub target: Option<PathBuf>,

    /// On Kubernetes: the kubeconfig (default: .shopctl/<env>/kubeconfig).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the app (release) and assemble a reproducible, non-root OCI image in
    /// .shopctl/image (an OCI image layout).
    #[command(
        after_help = "Two layers: a base (the shared libraries the binary loads, CA certificates, \
        time zones, user `app` 10001) and the binary. Every timestamp is SOURCE_DATE_EPOCH, or the \
        commit's time, so the same commit gives the same digest. Prints the digest and the compressed \
        size.\n\nExamples:\n  shopctl image build\n  shopctl image build --app-bin target/release/app --json"
    )]
    Build(ImageBuildArgs),

    /// Push the built image to the environment's ECR repository (or --registry), tagged with
    /// the commit and, optionally, a release tag.
    #[command(
        after_help = "Credentials: ECR's GetAuthorizationToken for the environment's repository; \
        with --registry, SHOPCTL_REGISTRY_USERNAME and SHOPCTL_REGISTRY_PASSWORD when set, else none \
        (--auth chooses). Blobs the registry has are not sent again. Tags never move: a tag that \
        names another image is refused before anything is uploaded.\n\nExamples:\n  \
        shopctl image push staging\n  shopctl image push staging --tag v1.4.0\n  \
        shopctl image push staging --registry http://127.0.0.1:5000 --json"
    )]
    Push(ImagePushArgs),

    /// List the images in the environment's ECR repository (or the tags at --registry).
    #[command(
        after_help = "Examples:\n  shopctl image ls staging\n  shopctl image ls staging --json\n  \
        shopctl image ls staging --registry http://127.0.0.1:5000"
    )]
    Ls(ImageLsArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Name the image in the layout with this tag (default: the commit's).
    #[arg(long, value_name = "TAG", value_parser = crate::image::parse_tag)]
    pub tag: Option<String>,

    /// Package this app binary instead of building one with cargo.
    #[arg(long, value_name = "PATH")]
    pub app_bin: Option<PathBuf>,

    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How to authenticate to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegistryAuthKind {
    /// ECR's GetAuthorizationToken with the environment's AWS identity.
    Ecr,
    /// SHOPCTL_REGISTRY_USERNAME and SHOPCTL_REGISTRY_PASSWORD.
    Basic,
    /// No credentials.
    None,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The environment (its [ecr] repository names the repository).
    #[arg(value_name = "ENV")]
    pub env: String,

    #[command(flatten)]
    pub target: RegistryTargetArgs,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which registry to push to and how to log in (`image push|ls`, `up <env>`).
#[derive(Debug, Clone, Args)]
pub struct RegistryTargetArgs {
    /// Any OCI registry instead of the environment's ECR, e.g. http://127.0.0.1:5000.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,

    /// Credentials to use (default: ecr for ECR; with --registry, basic when
    /// SHOPCTL_REGISTRY_USERNAME is set, else none).
    #[arg(long, value_enum)]
    pub auth: Option<RegistryAuthKind>,
}

#[derive(Debug, Args)]
pub struct ImagePushArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// A release tag to add to the commit tag (tags never move once pushed).
    #[arg(long, value_name = "TAG", value_parser = crate::image::parse_tag)]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImageLsArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// The dead-letter queues (emails.dlq, payments.dlq): jobs that failed for good.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the dead-lettered jobs; they stay in their queue.
    #[command(
        after_help = "The broker is the environment's [jobs] amqp_url (password from the variable \
        it names, SHOPCTL_AMQP_PASSWORD by default) or --amqp-url.\n\nExamples:\n  \
        shopctl jobs dlq list local\n  shopctl jobs dlq list --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --json"
    )]
    List(DlqListArgs),

    /// Move dead-lettered jobs back to their work queue, to run again.
    #[command(
        after_help = "Each job is published to its work queue with a publisher confirm and only then \
        removed from the dead-letter queue: nothing is lost. Asks first; without a terminal, --yes \
        is required.\n\nExamples:\n  shopctl jobs dlq replay local --queue emails --key password-reset:0190...\n  \
        shopctl jobs dlq replay local --all --yes"
    )]
    Replay(DlqReplayArgs),
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The environment whose broker to use ([jobs] in environments/<env>.toml).
    #[arg(value_name = "ENV", required_unless_present = "amqp_url")]
    pub env: Option<String>,

    /// The broker's URL, instead of an environment's (amqp://user:password@host:port/vhost).
    #[arg(
        long,
        value_name = "URL",
        env = "SHOPCTL_AMQP_URL",
        hide_env_values = true
    )]
    pub amqp_url: Option<String>,

    /// Only this queue's dead letters (default: every queue).
    #[arg(long, value_name = "QUEUE", value_parser = ["emails", "payments"])]
    pub queue: Option<String>,
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Replay the jobs with this key (the message id).
    #[arg(
        long,
        value_name = "KEY",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub key: Option<String>,

    /// Replay every dead-lettered job (of --queue, if given).
    #[arg(long)]
    pub all: bool,

    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Environments to render (file names under environments/, without .toml).
    #[arg(value_name = "ENV", required_unless_present = "all")]
    pub envs: Vec<String>,

    /// Render every environment.
    #[arg(long, conflicts_with = "envs")]
    pub all: bool,

    /// Write each environment to DIR/<env>/ instead of .shopctl/<env>/rendered/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Write nothing; exit 1 when the files on disk differ from a fresh render.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    /// Instead of the process topology: the AWS emulator and the Terraform stack on it.
    #[arg(long)]
    pub aws: bool,

    /// The app binary. Local: default `app` next to shopctl, else on PATH. Other
    /// environments: packaged into the image instead of a `cargo build --release`.
    #[arg(long, value_name = "PATH", conflicts_with = "aws")]
    pub app_bin: Option<PathBuf>,

    /// Stop after this step, and say which comes next (not for local).
    #[arg(long, value_enum, value_name = "STEP")]
    pub until: Option<crate::pipeline::Step>,

    /// Do not ask for confirmation (required when there is no terminal; not for local).
    #[arg(short, long)]
    pub yes: bool,

    /// Forget the recorded progress and run every step (not for local).
    #[arg(long)]
    pub restart: bool,

    /// Deploy to the cluster of this kubeconfig instead of writing one for the EKS cluster
    /// (required for deploy and smoke when the AWS API is an emulator; not for local).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryTargetArgs,

    #[command(flatten)]
    pub endpoint: AwsArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    /// The component: etcd-1, pg-1, haproxy, redis, rabbitmq, kafka, smtp, worker-1, app-1,
    /// nginx... (also supervisor, migrate, seed).
    #[arg(value_name = "COMPONENT")]
    pub component: String,

    /// How many lines from the end.
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub lines: usize,

    /// Keep printing what is appended.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    #[arg(value_name = "ENV")]
    pub env: String,

    #[arg(long, value_name = "PATH")]
    pub app_bin: PathBuf,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(short, long)]
    pub yes: bool,

    /// Also delete the environment's state directory (.shopctl/<env>).
    #[arg(long)]
    pub purge: bool,

    /// Delete the Kubernetes objects in the cluster of this kubeconfig (not for local;
    /// default: the environment's EKS cluster).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    pub endpoint: AwsArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Environments to validate.
    #[arg(value_name = "ENV", required_unless_present = "all")]
    pub envs: Vec<String>,

    /// Validate every environment.
    #[arg(long, conflicts_with = "envs")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    /// Where to write it (default: .shopctl/<env>/kubeconfig).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct EksTokenArgs {
    /// The environment whose cluster the token is for.
    #[arg(value_name = "ENV")]
    pub env: String,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct AwsArgs {
    /// Send every AWS call to this AWS-compatible API (overrides aws.endpoint_url).
    #[arg(long, value_name = "URL", env = "SHOPCTL_AWS_ENDPOINT")]
    pub aws_endpoint: Option<EndpointUrl>,
}

#[derive(Debug, Args)]
pub struct TerraformArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Keep Terraform state on this machine instead of the configured backend.
    #[arg(long)]
    pub local_state: bool,
}

#[derive(Debug, Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub terraform: TerraformArgs,

    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// For a local environment: report its AWS emulator's resources, not its processes.
    #[arg(long)]
    pub aws_resources: bool,
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// The environment (a file name under environments/, without .toml).
    #[arg(value_name = "ENV")]
    pub env: String,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
