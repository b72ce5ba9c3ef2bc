//! Pushing an image over the OCI distribution API (oci-client): blobs the registry lacks,
//! then the manifest under each tag. Tags never move: a tag that names another image is
//! refused before anything is uploaded.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;

use super::layout::{Image, MANIFEST_TYPE};
use super::ImageError;

/// Where to push: `host[:port]` and a repository, over HTTP or HTTPS.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub registry: String,
    pub repository: String,
    pub insecure_http: bool,
}

impl Target {
    /// From a URL (`http://127.0.0.1:5000`, `https://registry.example.com`) or a bare host,
    /// which means HTTPS, and a repository name.
    pub fn new(url: &str, repository: &str) -> Target {
        let (insecure_http, rest) = match url.split_once("://") {
            Some(("http", rest)) => (true, rest),
            Some((_, rest)) => (false, rest),
            None => (false, url),
        };
        Target {
            registry: rest.trim_end_matches('/').to_owned(),
            repository: repository.to_owned(),
            insecure_http,
        }
    }

    pub fn reference(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_owned(),
        )
    }

    pub fn display(&self, tag: &str) -> String {
        format!("{}/{}:{tag}", self.registry, self.repository)
    }

    /// `host[:port]/repository`, as a pod spec names the image (without tag or digest).
    pub fn repository_reference(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Credentials for a registry.
#[derive(Clone)]
pub enum Credentials {
    Anonymous,
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Credentials {
    // Never print a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

impl Credentials {
    fn auth(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub digest: String,
    pub references: Vec<String>,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_present: usize,
    /// Tags that already named this image (nothing to do for them).
    pub tags_present: Vec<String>,
}

pub struct Registry {
    client: Client,
    target: Target,
    auth: RegistryAuth,
}

impl Registry {
    pub async fn connect(target: Target, credentials: &Credentials) -> Registry {
        let protocol = if target.insecure_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            // One request per blob: registries such as ECR and distribution accept it,
            // and an image's layers are small.
            use_monolithic_push: true,
            ..ClientConfig::default()
        });
        let auth = credentials.auth();
        client.store_auth_if_needed(&target.registry, &auth).await;
        Registry {
            client,
            target,
            auth,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The image a tag names, if any.
    pub async fn tag_digest(&self, tag: &str) -> Result<Option<String>, ImageError> {
        match self
            .client
            .fetch_manifest_digest(&self.target.reference(tag), &self.auth)
            .await
        {
            Ok(digest) => Ok(Some(digest)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Pushes `image` under every tag: checks the tags, uploads missing blobs, then
    /// the manifest. A tag naming another image stops the push before any upload.
    pub async fn push(&self, image: &Image, tags: &[String]) -> Result<Pushed, ImageError> {
        let mut tags_present = Vec::new();
        for tag in tags {
            match self.tag_digest(tag).await? {
                Some(existing) if existing == image.digest => tags_present.push(tag.clone()),
                Some(existing) => {
                    return Err(ImageError::TagExists {
                        reference: self.target.display(tag),
                        existing,
                        ours: image.digest.clone(),
                    })
                }
                None => {}
            }
        }
        let first = self.target.reference(&tags[0]);
        let (mut blobs_uploaded, mut bytes_uploaded, mut blobs_present) = (0, 0, 0);
        for (digest, bytes) in &image.blobs {
            let present = self
                .client
                .blob_exists(&first, digest)
                .await
                .map_err(|e| self.error(e))?;
            if present {
                blobs_present += 1;
                continue;
            }
            self.client
                .push_blob(&first, bytes.clone(), digest)
                .await
                .map_err(|e| self.error(e))?;
            blobs_uploaded += 1;
            bytes_uploaded += bytes.len() as u64;
        }
        for tag in tags.iter().filter(|t| !tags_present.contains(t)) {
            self.client
                .push_manifest_raw(
                    &self.target.reference(tag),
                    image.manifest_bytes.clone(),
                    MANIFEST_TYPE.parse().expect("a valid header value"),
                )
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(Pushed {
            digest: image.digest.clone(),
            references: tags.iter().map(|t| self.target.display(t)).collect(),
            blobs_uploaded,
            bytes_uploaded,
            blobs_present,
            tags_present,
        })
    }

    /// Tags in the repository (an empty list when it has none yet).
    pub async fn tags(&self) -> Result<Vec<String>, ImageError> {
        let reference = self.target.reference("latest");
        match self
            .client
            .list_tags(&reference, &self.auth, None, None)
            .await
        {
            Ok(response) => Ok(response.tags),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// A registry error, sorted into what the user can act on.
    fn error(&self, error: OciDistributionError) -> ImageError {
        let registry = self.target.registry.clone();
        match &error {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => {
                ImageError::Unauthorized { registry }
            }
            OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
                ImageError::Unreachable {
                    registry,
                    detail: root_cause(e),
                }
            }
            OciDistributionError::RequestError(e)
                if e.status()
                    .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
            {
                ImageError::Unauthorized { registry }
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => ImageError::Unauthorized { registry },
            _ => ImageError::Registry {
                registry,
                detail: error.to_string(),
            },
        }
    }
}

fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.as_u16() == 404),
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

/// The innermost message of an error chain ("Connection refused (os error 111)").
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut last = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_from_urls_and_hosts() {
        assert_eq!(
            Target::new("http://127.0.0.1:5000/", "shop/app"),
            Target {
                registry: "127.0.0.1:5000".into(),
                repository: "shop/app".into(),
                insecure_http: true
            }
        );
        let ecr = Target::new("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "shop/app");
        assert!(!ecr.insecure_http);
        assert_eq!(
            ecr.display("abc"),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/app:abc"
        );
        assert_eq!(
            ecr.repository_reference(),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/app"
        );
        assert_eq!(
            Target::new("http://127.0.0.1:5000", "shop/app").repository_reference(),
            "127.0.0.1:5000/shop/app"
        );
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials::Basic {
            username: "AWS".into(),
            password: "hunter2".into(),
        };
        assert_eq!(format!("{c:?}"), "Basic(AWS, ***)");
    }
}
