//! AWS SDK configuration shared by every command that calls AWS: the
//! environment's region, and an AWS-compatible endpoint when one is set.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};

use crate::config::Environment;

/// Credentials used against an emulator when the caller set none: emulators
/// accept any key, and the SDK refuses to sign without one.
const EMULATOR_KEY: (&str, &str) = ("shopctl-emulator", "shopctl-emulator");

pub async fn sdk_config(env: &Environment) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(env.aws.region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        );
    if let Some(url) = &env.aws.endpoint_url {
        loader = loader.endpoint_url(url.as_str());
    }
    if let Some((key, secret)) = emulator_credentials(env) {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            key,
            secret,
            None,
            None,
            "shopctl-emulator",
        ));
    }
    loader.load().await
}

/// The placeholder key pair, when an emulator is configured and the caller
/// set no credentials of their own.
fn emulator_credentials(env: &Environment) -> Option<(&'static str, &'static str)> {
    let unset = std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
        && std::env::var_os("AWS_PROFILE").is_none();
    (env.aws.endpoint_url.is_some() && unset).then_some(EMULATOR_KEY)
}

/// Environment variables that give a child process (Terraform) the same
/// emulator credentials as `sdk_config`.
pub fn emulator_env(env: &Environment) -> Vec<(&'static str, &'static str)> {
    emulator_credentials(env)
        .map(|(key, secret)| {
            vec![
                ("AWS_ACCESS_KEY_ID", key),
                ("AWS_SECRET_ACCESS_KEY", secret),
            ]
        })
        .unwrap_or_default()
}

/// An S3 client, path-style against an emulator (whose single host cannot
/// serve bucket subdomains), optionally in another region than the SDK's.
pub fn s3_client(
    sdk: &aws_config::SdkConfig,
    env: &Environment,
    region: Option<&crate::config::Region>,
) -> aws_sdk_s3::Client {
    let mut config =
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(env.aws.endpoint_url.is_some());
    if let Some(region) = region {
        config = config.region(Region::new(region.to_string()));
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// Fails fast, with the address, when a configured endpoint does not accept
/// connections, instead of letting SDKs and Terraform retry for minutes.
pub fn check_reachable(env: &Environment) -> Result<()> {
    let Some(url) = &env.aws.endpoint_url else {
        return Ok(());
    };
    let address = url.host_port();
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the AWS endpoint {url}"))?
        .collect();
    for addr in &addrs {
        if TcpStream::connect_timeout(addr, Duration::from_secs(2)).is_ok() {
            return Ok(());
        }
    }
    bail!(
        "the AWS endpoint {url} is unreachable (nothing accepts connections at {address})\n  \
         hint: start the emulator (e.g. `moto_server -p <port>`), or fix aws.endpoint_url / --aws-endpoint"
    )
}
