//! Value types of the environment config. Each parses from its TOML string
//! and rejects what AWS or Kubernetes would reject, so that a bad value is
//! reported at its own line instead of failing late in Terraform.

use serde::{Deserialize, Deserializer, Serialize};

/// Declares a string newtype that can only hold values accepted by `$check`.
macro_rules! parsed_string {
    ($(#[$meta:meta])* $name:ident, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        #[allow(dead_code)] // not every type's text is read back
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(s).map(|()| $name(s.to_owned()))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

parsed_string!(
    /// An AWS region name such as `eu-west-1`.
    Region,
    |s| {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(()).ok_or_else(|| format!("`{s}` is not an AWS region; allowed: a region name such as `eu-west-1`"))
    }
);

parsed_string!(
    /// A DNS label (RFC 1123): Kubernetes names, node group names, aliases.
    DnsLabel,
    |s| {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        ok.then_some(()).ok_or_else(|| {
            format!("`{s}` is not a DNS label; allowed: 1-63 lowercase letters, digits and `-`, starting and ending with a letter or digit")
        })
    }
);

parsed_string!(
    /// A DNS name such as `shop.example.com`.
    DomainName,
    |s| {
        let ok = s.len() <= 253
            && s.contains('.')
            && s.split('.').all(|label| label.parse::<DnsLabel>().is_ok());
        ok.then_some(()).ok_or_else(|| format!("`{s}` is not a domain name; allowed: lowercase DNS labels joined by dots, such as `shop.example.com`"))
    }
);

parsed_string!(
    /// An S3 bucket name (the general purpose bucket rules).
    BucketName,
    |s| {
        let ok = (3..=63).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
            && !s.contains("..")
            && s.parse::<std::net::Ipv4Addr>().is_err();
        ok.then_some(()).ok_or_else(|| {
            format!("`{s}` is not an S3 bucket name; allowed: 3-63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit")
        })
    }
);

parsed_string!(
    /// An ECR repository name, e.g. `shop/app`.
    RepositoryName,
    |s| {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        let ok = (2..=256).contains(&s.len()) && s.split('/').all(component_ok);
        ok.then_some(()).ok_or_else(|| {
            format!("`{s}` is not an ECR repository name; allowed: lowercase path components of letters, digits, `.`, `_` and `-` joined by `/`, such as `shop/app`")
        })
    }
);

parsed_string!(
    /// A Kubernetes minor version that EKS offers, such as `1.33`.
    EksVersion,
    |s| {
        let minor = s.strip_prefix("1.").and_then(|m| m.parse::<u32>().ok());
        match minor {
            Some(m) if (29..=35).contains(&m) => Ok(()),
            _ => Err(format!("`{s}` is not a supported EKS version; allowed: \"1.29\" to \"1.35\"")),
        }
    }
);

parsed_string!(
    /// A Kubernetes CPU quantity: cores (`2`, `0.5`) or millicores (`500m`).
    Cpu,
    |s| {
        let digits = s.strip_suffix('m').unwrap_or(s);
        let ok = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && digits.parse::<f64>().is_ok_and(|v| v > 0.0)
            && !(s.ends_with('m') && digits.contains('.'));
        ok.then_some(()).ok_or_else(|| format!("`{s}` is not a CPU quantity; allowed: cores such as \"2\" or \"0.5\", or millicores such as \"500m\""))
    }
);

parsed_string!(
    /// A Kubernetes memory or storage quantity in binary units (`512Mi`, `20Gi`).
    Bytes,
    |s| {
        let digits = ["Ki", "Mi", "Gi", "Ti"].iter().find_map(|unit| s.strip_suffix(unit));
        let ok = digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) && d.parse::<u64>().is_ok_and(|v| v > 0));
        ok.then_some(()).ok_or_else(|| format!("`{s}` is not a size; allowed: a whole number with Ki, Mi, Gi or Ti, such as \"512Mi\" or \"20Gi\""))
    }
);

parsed_string!(
    /// An http(s) URL of an AWS-compatible API endpoint.
    EndpointUrl,
    |s| {
        let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
        let ok = rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace));
        ok.then_some(()).ok_or_else(|| format!("`{s}` is not an endpoint URL; allowed: an http:// or https:// URL such as \"http://127.0.0.1:5000\""))
    }
);

impl EndpointUrl {
    /// `host:port` of the URL, with the scheme's default port filled in.
    pub fn host_port(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("http", &self.0));
        let authority = rest.split('/').next().unwrap_or(rest);
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{}", if scheme == "https" { 443 } else { 80 })
        }
    }
}

/// An IPv4 network in CIDR notation with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Cidr(#[serde(serialize_with = "serialize_display")] pub ipnet::Ipv4Net);

fn serialize_display<S: serde::Serializer>(net: &ipnet::Ipv4Net, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(net)
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let net: ipnet::Ipv4Net = s
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 CIDR; allowed: an address and prefix length such as \"10.0.0.0/16\""))?;
        if net.network() != net.addr() {
            return Err(format!(
                "`{s}` has host bits set; did you mean \"{}\"?",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!("eu-west-1".parse::<Region>().is_ok());
        assert!("eu-west".parse::<Region>().is_err());
        assert!("shop-app".parse::<DnsLabel>().is_ok());
        assert!("Shop".parse::<DnsLabel>().is_err());
        assert!("-x".parse::<DnsLabel>().is_err());
        assert!("shop/app".parse::<RepositoryName>().is_ok());
        assert!("Shop/App".parse::<RepositoryName>().is_err());
        assert!("my.bucket-1".parse::<BucketName>().is_ok());
        assert!("10.0.0.1".parse::<BucketName>().is_err());
        assert!("1.33".parse::<EksVersion>().is_ok());
        assert!("1.20".parse::<EksVersion>().is_err());
        assert!("500m".parse::<Cpu>().is_ok());
        assert!("0.5".parse::<Cpu>().is_ok());
        assert!("0.5m".parse::<Cpu>().is_err());
        assert!("20Gi".parse::<Bytes>().is_ok());
        assert!("20GB".parse::<Bytes>().is_err());
        assert!("10.0.0.0/16".parse::<Cidr>().is_ok());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let url: EndpointUrl = "http://127.0.0.1:5000/x".parse().unwrap();
        assert_eq!(url.host_port(), "127.0.0.1:5000");
        let url: EndpointUrl = "https://example.com".parse().unwrap();
        assert_eq!(url.host_port(), "example.com:443");
        let err = "10.0.0.1/16".parse::<Cidr>().unwrap_err();
        assert!(err.contains("10.0.0.0/16"), "{err}");
    }
}
