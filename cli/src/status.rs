//! `shopctl status <env>`: what exists in AWS for an environment, read
//! directly from the EC2, EKS, ECR and S3 APIs (not from Terraform state).

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

use crate::config::LoadedEnvironment;

/// The EKS cluster's name, as templates/terraform names it.
pub fn cluster_name(env: &str) -> String {
    format!("shop-{env}")
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub environment: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub vpc: Option<Vpc>,
    pub subnets: Vec<Subnet>,
    pub cluster: Option<Cluster>,
    pub node_groups: Vec<NodeGroup>,
    pub addons: Addons,
    pub repository: Option<Repository>,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Serialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct Subnet {
    pub id: String,
    pub cidr: String,
    pub zone: String,
    pub public: bool,
}

#[derive(Debug, Serialize)]
pub struct Cluster {
    pub name: String,
    pub status: String,
    pub version: String,
    pub endpoint: Option<String>,
    /// kubernetes_network_config's Service CIDR, as the EKS API reports it.
    pub service_cidr: Option<String>,
}

/// The cluster's EKS managed add-ons, or why there are none to look at.
#[derive(Debug, Default, Serialize)]
pub struct Addons {
    /// Set when the add-ons are skipped (an AWS emulator is the target); nothing is listed then.
    pub skipped: Option<String>,
    pub installed: Vec<Addon>,
}

#[derive(Debug, Serialize)]
pub struct Addon {
    pub name: String,
    pub version: String,
    pub status: String,
}

#[derive(Debug, Serialize)]
pub struct NodeGroup {
    pub name: String,
    pub status: String,
    pub min: i32,
    pub desired: i32,
    pub max: i32,
    pub instance_types: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Repository {
    pub name: String,
    pub uri: String,
    pub tag_mutability: String,
    pub scan_on_push: bool,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub purpose: String,
    pub name: String,
    pub exists: bool,
    pub versioning: Option<String>,
}

impl Status {
    /// Whether everything the environment defines was found.
    pub fn complete(&self) -> bool {
        self.vpc.is_some()
            && self.cluster.is_some()
            && self.repository.is_some()
            && self.buckets.iter().all(|b| b.exists)
    }
}

pub async fn query(env: &LoadedEnvironment) -> Result<Status> {
    crate::aws::check_reachable(&env.config)?;
    let config = &env.config;
    let sdk = crate::aws::sdk_config(config).await;
    let cluster_name = cluster_name(&env.name);
    let skipped = crate::terraform::addons::skipped_for_emulator(config);
    let (network, cluster, repository, buckets) = tokio::try_join!(
        network(&sdk, &env.name),
        cluster(&sdk, &cluster_name, !skipped),
        repository(&sdk, config.ecr.repository.as_str()),
        buckets(&sdk, config),
    )?;
    let (vpc, subnets) = network;
    let (cluster, node_groups, mut addons) = cluster;
    if skipped {
        addons.skipped = Some(crate::terraform::addons::SKIPPED_REASON.to_owned());
    }
    Ok(Status {
        environment: env.name.clone(),
        region: config.aws.region.to_string(),
        endpoint: config.aws.endpoint_url.as_ref().map(ToString::to_string),
        vpc,
        subnets,
        cluster,
        node_groups,
        addons,
        repository,
        buckets,
    })
}

fn tag_filter(key: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

async fn network(sdk: &aws_config::SdkConfig, env: &str) -> Result<(Option<Vpc>, Vec<Subnet>)> {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let vpcs = ec2
        .describe_vpcs()
        .filters(tag_filter("environment", env))
        .filters(tag_filter("managed-by", "shopctl"))
        .send()
        .await
        .context("EC2 DescribeVpcs failed")?;
    let Some(vpc) = vpcs.vpcs().first() else {
        return Ok((None, Vec::new()));
    };
    let vpc_id = vpc.vpc_id().unwrap_or_default().to_owned();
    let subnets = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&vpc_id)
                .build(),
        )
        .send()
        .await
        .context("EC2 DescribeSubnets failed")?;
    let mut subnets: Vec<Subnet> = subnets
        .subnets()
        .iter()
        .map(|s| Subnet {
            id: s.subnet_id().unwrap_or_default().to_owned(),
            cidr: s.cidr_block().unwrap_or_default().to_owned(),
            zone: s.availability_zone().unwrap_or_default().to_owned(),
            public: s
                .tags()
                .iter()
                .any(|t| t.key() == Some("kubernetes.io/role/elb")),
        })
        .collect();
    subnets.sort_by(|a, b| (!a.public, &a.zone).cmp(&(!b.public, &b.zone)));
    let vpc = Vpc {
        id: vpc_id,
        cidr: vpc.cidr_block().unwrap_or_default().to_owned(),
        state: vpc
            .state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
    };
    Ok((Some(vpc), subnets))
}

/// The cluster, its node groups and (when `with_addons`) its EKS managed add-ons.
async fn cluster(
    sdk: &aws_config::SdkConfig,
    name: &str,
    with_addons: bool,
) -> Result<(Option<Cluster>, Vec<NodeGroup>, Addons)> {
    let eks = aws_sdk_eks::Client::new(sdk);
    let Some(c) = crate::eks::describe_raw(&eks, name).await? else {
        return Ok((None, Vec::new(), Addons::default()));
    };
    let cluster = Cluster {
        name: name.to_owned(),
        status: c
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        version: c.version().unwrap_or_default().to_owned(),
        endpoint: c.endpoint().map(str::to_owned),
        service_cidr: c
            .kubernetes_network_config()
            .and_then(|n| n.service_ipv4_cidr())
            .map(str::to_owned),
    };
    let names = eks
        .list_nodegroups()
        .cluster_name(name)
        .send()
        .await
        .context("EKS ListNodegroups failed")?;
    let mut groups = Vec::new();
    for group in names.nodegroups() {
        let described = eks
            .describe_nodegroup()
            .cluster_name(name)
            .nodegroup_name(group)
            .send()
            .await
            .context("EKS DescribeNodegroup failed")?;
        let Some(g) = described.nodegroup() else {
            continue;
        };
        let scaling = g.scaling_config();
        groups.push(NodeGroup {
            name: group.clone(),
            status: g
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            min: scaling.and_then(|s| s.min_size()).unwrap_or_default(),
            desired: scaling.and_then(|s| s.desired_size()).unwrap_or_default(),
            max: scaling.and_then(|s| s.max_size()).unwrap_or_default(),
            instance_types: g.instance_types().to_vec(),
        });
    }
    let addons = if with_addons {
        addons(&eks, name).await?
    } else {
        Addons::default()
    };
    Ok((Some(cluster), groups, addons))
}

async fn addons(eks: &aws_sdk_eks::Client, cluster: &str) -> Result<Addons> {
    let names = eks
        .list_addons()
        .cluster_name(cluster)
        .send()
        .await
        .context("EKS ListAddons failed")?;
    let mut installed = Vec::new();
    for name in names.addons() {
        let described = eks
            .describe_addon()
            .cluster_name(cluster)
            .addon_name(name)
            .send()
            .await
            .context("EKS DescribeAddon failed")?;
        if let Some(a) = described.addon() {
            installed.push(Addon {
                name: name.clone(),
                version: a.addon_version().unwrap_or_default().to_owned(),
                status: a
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(Addons {
        skipped: None,
        installed,
    })
}

async fn repository(sdk: &aws_config::SdkConfig, name: &str) -> Result<Option<Repository>> {
    let found = crate::image::ecr::describe(sdk, name).await?;
    Ok(found.map(|r| Repository {
        name: name.to_owned(),
        uri: r.repository_uri().unwrap_or_default().to_owned(),
        tag_mutability: r
            .image_tag_mutability()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        scan_on_push: r
            .image_scanning_configuration()
            .is_some_and(|s| s.scan_on_push()),
    }))
}

async fn buckets(
    sdk: &aws_config::SdkConfig,
    config: &crate::config::Environment,
) -> Result<Vec<Bucket>> {
    let s3 = crate::aws::s3_client(sdk, config, None);
    let mut buckets = Vec::new();
    for (purpose, name) in [
        ("media", &config.s3.media_bucket),
        ("static", &config.s3.static_bucket),
    ] {
        let exists = match s3.head_bucket().bucket(name.as_str()).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("S3 HeadBucket {name} failed")))
            }
        };
        let versioning = if exists {
            let out = s3
                .get_bucket_versioning()
                .bucket(name.as_str())
                .send()
                .await
                .context("S3 GetBucketVersioning failed")?;
            Some(out.status().map_or("Disabled", |s| s.as_str()).to_owned())
        } else {
            None
        };
        buckets.push(Bucket {
            purpose: purpose.to_owned(),
            name: name.to_string(),
            exists,
            versioning,
        });
    }
    Ok(buckets)
}

const MISSING: &str = "missing";

/// The human view: one row per resource.
pub fn table(status: &Status) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["resource", "name", "state", "details"]);
    match &status.vpc {
        Some(v) => table.add_row([
            "vpc",
            &v.id,
            &v.state,
            &format!("{}, {} subnets", v.cidr, status.subnets.len()),
        ]),
        None => table.add_row(["vpc", "-", MISSING, ""]),
    };
    for s in &status.subnets {
        let kind = if s.public {
            "subnet (public)"
        } else {
            "subnet (private)"
        };
        table.add_row([
            kind,
            &s.id,
            "available",
            &format!("{} in {}", s.cidr, s.zone),
        ]);
    }
    match &status.cluster {
        Some(c) => table.add_row([
            "eks cluster",
            &c.name,
            &c.status,
            &format!("Kubernetes {}", c.version),
        ]),
        None => table.add_row([
            "eks cluster",
            &cluster_name(&status.environment),
            MISSING,
            "",
        ]),
    };
    for g in &status.node_groups {
        table.add_row([
            "node group",
            &g.name,
            &g.status,
            &format!(
                "{}/{}/{} (min/desired/max) {}",
                g.min,
                g.desired,
                g.max,
                g.instance_types.join(",")
            ),
        ]);
    }
    if let Some(reason) = &status.addons.skipped {
        table.add_row(["eks add-ons", "-", "skipped", reason]);
    }
    for a in &status.addons.installed {
        table.add_row(["eks add-on", &a.name, &a.status, &a.version]);
    }
    match &status.repository {
        Some(r) => table.add_row([
            "ecr repository",
            &r.name,
            "available",
            &format!(
                "{} tags {}, scan on push {}",
                r.uri,
                r.tag_mutability.to_lowercase(),
                r.scan_on_push
            ),
        ]),
        None => table.add_row(["ecr repository", "-", MISSING, ""]),
    };
    for b in &status.buckets {
        let state = if b.exists { "available" } else { MISSING };
        let details = b
            .versioning
            .as_ref()
            .map(|v| format!("{} files, versioning {}", b.purpose, v.to_lowercase()));
        table.add_row([
            &format!("s3 bucket ({})", b.purpose),
            &b.name,
            state,
            &details.unwrap_or_default(),
        ]);
    }
    table.to_string()
}
