//! The S3 bucket that holds an environment's Terraform state. It must exist
//! before `terraform init`, so shopctl creates it (versioned, encrypted,
//! private) the first time, the way a platform team would by hand.

use anyhow::{Context, Result};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};

use crate::config::LoadedEnvironment;

/// Creates the state bucket when missing. Returns whether it was created.
pub async fn ensure(env: &LoadedEnvironment) -> Result<bool> {
    let config = &env.config;
    let Some(bucket) = &config.state.bucket else {
        return Ok(false);
    };
    let region = config.state_region().to_string();
    let sdk = crate::aws::sdk_config(config).await;
    let s3 = crate::aws::s3_client(&sdk, config, Some(config.state_region()));
    let bucket = bucket.as_str();
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(false),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {}
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot check the state bucket {bucket}"))
            );
        }
    }
    let mut create = s3.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    let what = |step: &str| format!("cannot {step} the state bucket {bucket}");
    create.send().await.with_context(|| what("create"))?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .with_context(|| what("enable versioning on"))?;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .block_public_policy(true)
                .ignore_public_acls(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .with_context(|| what("block public access to"))?;
    let encryption = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .build()
        .expect("algorithm is set");
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(encryption)
                        .build(),
                )
                .build()
                .expect("rules are set"),
        )
        .send()
        .await
        .with_context(|| what("encrypt"))?;
    Ok(true)
}
