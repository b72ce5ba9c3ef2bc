//! Reaching an environment's EKS cluster without the aws CLI: the cluster's endpoint and
//! CA from DescribeCluster, a token from a presigned STS request, and a kubeconfig whose
//! user runs `shopctl eks-token` for a fresh token whenever kubectl (or shopctl) needs one.

pub mod command;
pub mod kubeconfig;
pub mod token;

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;

use crate::config::Environment;

#[derive(Debug, thiserror::Error)]
pub enum EksError {
    #[error(
        "the EKS cluster {name} does not exist (in {region}); create it with `shopctl apply {env}`"
    )]
    ClusterMissing {
        name: String,
        region: String,
        env: String,
    },
    #[error("the EKS cluster {name} is {status}, not ACTIVE; wait for it, then run this again")]
    ClusterNotActive { name: String, status: String },
    #[error("DescribeCluster gave no {what} for {name}")]
    Incomplete { name: String, what: &'static str },
    #[error(
        "no AWS credentials: {0} (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    )]
    NoCredentials(String),
    #[error("could not sign the EKS token: {0}")]
    Sign(String),
    #[error("EKS DescribeCluster failed: {0}")]
    Aws(String),
}

/// What a client needs to reach a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    /// `https://…` of the API server.
    pub endpoint: String,
    /// The cluster CA, base64 PEM as EKS gives it (kubeconfig's certificate-authority-data).
    pub ca_data: String,
    pub version: String,
}

/// DescribeCluster as it is: None when there is no such cluster (shared with `status`).
pub async fn describe_raw(
    eks: &aws_sdk_eks::Client,
    name: &str,
) -> Result<Option<aws_sdk_eks::types::Cluster>, EksError> {
    match eks.describe_cluster().name(name).send().await {
        Ok(out) => Ok(out.cluster),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(EksError::Aws(
            aws_sdk_eks::error::DisplayErrorContext(e).to_string(),
        )),
    }
}

/// DescribeCluster: the cluster must exist and be ACTIVE.
pub async fn describe(
    sdk: &aws_config::SdkConfig,
    env: &Environment,
    env_name: &str,
    name: &str,
) -> Result<Cluster, EksError> {
    let eks = aws_sdk_eks::Client::new(sdk);
    let c = describe_raw(&eks, name)
        .await?
        .ok_or_else(|| EksError::ClusterMissing {
            name: name.into(),
            region: env.aws.region.to_string(),
            env: env_name.into(),
        })?;
    let missing = |what| EksError::Incomplete {
        name: name.into(),
        what,
    };
    let status = c
        .status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    if status != "ACTIVE" {
        return Err(EksError::ClusterNotActive {
            name: name.into(),
            status,
        });
    }
    Ok(Cluster {
        name: name.into(),
        endpoint: c.endpoint().ok_or_else(|| missing("endpoint"))?.to_owned(),
        ca_data: c
            .certificate_authority()
            .and_then(|ca| ca.data())
            .ok_or_else(|| missing("certificate authority"))?
            .to_owned(),
        version: c.version().unwrap_or_default().to_owned(),
    })
}

/// STS for the environment: its AWS-compatible endpoint when one is set, else the
/// regional STS endpoint (what EKS's authenticator verifies against).
pub fn sts_url(env: &Environment) -> String {
    match &env.aws.endpoint_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!("https://sts.{}.amazonaws.com", env.aws.region),
    }
}

/// The credentials the SDK resolved (profile, environment, SSO, or the emulator's).
pub async fn credentials(sdk: &aws_config::SdkConfig) -> Result<Credentials, EksError> {
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| EksError::NoCredentials("no credentials provider".into()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| EksError::NoCredentials(e.to_string()))
}
