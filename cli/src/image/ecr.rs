//! The environment's ECR repository through aws-sdk-ecr: where it is, a registry login
//! (GetAuthorizationToken), and what images it holds.

use base64::Engine;
use serde::Serialize;

use super::registry::Credentials;
use super::ImageError;

/// The repository as ECR describes it; None when there is none of that name.
pub async fn describe(
    sdk: &aws_config::SdkConfig,
    name: &str,
) -> Result<Option<aws_sdk_ecr::types::Repository>, ImageError> {
    let ecr = aws_sdk_ecr::Client::new(sdk);
    match ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.repositories().first().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_repository_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(ImageError::Aws {
            call: "ECR DescribeRepositories",
            detail: crate::errors::chain(&e),
        }),
    }
}

/// The repository's URI (`<account>.dkr.ecr.<region>.amazonaws.com/shop/app`).
pub async fn repository_uri(
    sdk: &aws_config::SdkConfig,
    name: &str,
    env: &str,
) -> Result<String, ImageError> {
    describe(sdk, name)
        .await?
        .and_then(|r| r.repository_uri().map(str::to_owned))
        .ok_or_else(|| missing(name, sdk, env))
}

/// A registry login from GetAuthorizationToken: user `AWS` and a 12-hour password.
pub async fn credentials(sdk: &aws_config::SdkConfig) -> Result<Credentials, ImageError> {
    let ecr = aws_sdk_ecr::Client::new(sdk);
    let out = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| ImageError::Aws {
            call: "ECR GetAuthorizationToken",
            detail: crate::errors::chain(&e),
        })?;
    let token = out
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or(ImageError::Aws {
            call: "ECR GetAuthorizationToken",
            detail: "the answer holds no token".into(),
        })?;
    parse_token(token)
}

/// `base64("AWS:<password>")` into its two halves.
fn parse_token(token: &str) -> Result<Credentials, ImageError> {
    let bad = |why: &str| ImageError::Aws {
        call: "ECR GetAuthorizationToken",
        detail: format!("the token is not base64 of `user:password`: {why}"),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|e| bad(&e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| bad(&e.to_string()))?;
    let (username, password) = text.split_once(':').ok_or_else(|| bad("no `:`"))?;
    Ok(Credentials::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// One image in the repository.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub tags: Vec<String>,
    pub digest: String,
    pub size_bytes: i64,
    pub pushed_at: Option<String>,
}

/// Every image in the repository, newest first.
pub async fn list(
    sdk: &aws_config::SdkConfig,
    name: &str,
    env: &str,
) -> Result<Vec<Listed>, ImageError> {
    let ecr = aws_sdk_ecr::Client::new(sdk);
    let mut pages = ecr
        .describe_images()
        .repository_name(name)
        .into_paginator()
        .send();
    let mut images = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) =>
            {
                return Err(missing(name, sdk, env))
            }
            Err(e) => {
                return Err(ImageError::Aws {
                    call: "ECR DescribeImages",
                    detail: crate::errors::chain(&e),
                })
            }
        };
        for d in page.image_details() {
            images.push((
                d.image_pushed_at().map(|t| t.secs()).unwrap_or_default(),
                Listed {
                    tags: d.image_tags().to_vec(),
                    digest: d.image_digest().unwrap_or_default().to_owned(),
                    size_bytes: d.image_size_in_bytes().unwrap_or_default(),
                    pushed_at: d.image_pushed_at().and_then(|t| {
                        t.fmt(aws_sdk_ecr::primitives::DateTimeFormat::DateTime)
                            .ok()
                    }),
                },
            ));
        }
    }
    images.sort_by_key(|(pushed_at, _)| std::cmp::Reverse(*pushed_at));
    Ok(images.into_iter().map(|(_, i)| i).collect())
}

fn missing(name: &str, sdk: &aws_config::SdkConfig, env: &str) -> ImageError {
    ImageError::NoRepository {
        name: name.to_owned(),
        region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        env: env.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecr_token_is_user_and_password() {
        // As GetAuthorizationToken encodes it.
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:s3cret:with:colons");
        match parse_token(&token).unwrap() {
            Credentials::Basic { username, password } => {
                assert_eq!(username, "AWS");
                assert_eq!(password, "s3cret:with:colons");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_token("not base64!").is_err());
    }
}
