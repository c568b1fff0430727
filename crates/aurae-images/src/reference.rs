//! Image references: `host[:port]/repository[:tag|@sha256:digest]`, with the
//! docker.io shorthand (`busybox` is `docker.io/library/busybox:latest`).

use std::fmt;
use std::net::IpAddr;

use oci_client::Reference;

use super::digest::Digest;
use super::error::lowercase_first;
use super::error::ImageError;

/// Longest accepted reference (docker's own limit on a repository name is 255).
pub const MAX_REFERENCE_LEN: usize = 512;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    inner: Reference,
}

impl ImageReference {
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: reference.chars().take(MAX_REFERENCE_LEN).collect(),
            reason,
        };
        if reference.is_empty() {
            return Err(invalid("the reference is empty".into()));
        }
        if reference.len() > MAX_REFERENCE_LEN {
            return Err(invalid(format!(
                "it is {} bytes long: at most {MAX_REFERENCE_LEN} are allowed",
                reference.len()
            )));
        }
        if reference.trim() != reference || reference.chars().any(char::is_control) {
            return Err(invalid("it contains spaces or control characters".into()));
        }
        let inner: Reference = reference
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(lowercase_first(&e.to_string())))?;
        if let Some(digest) = inner.digest() {
            Digest::parse(digest).map_err(|e| invalid(e.to_string()))?;
        }
        if inner.repository().split('/').any(|c| c == ".." || c == ".") {
            return Err(invalid("the repository has a '.' or '..' component".into()));
        }
        Ok(Self { inner })
    }

    /// The registry as written, e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The host to contact (`docker.io` resolves to `index.docker.io`).
    pub fn resolve_registry(&self) -> &str {
        self.inner.resolve_registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// Whether the registry is this host: `localhost`, a loopback address.
    /// Such registries are spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(self.registry())
    }

    pub(crate) fn oci(&self) -> &Reference {
        &self.inner
    }

    /// The same repository at a manifest digest (used for an index entry).
    pub(crate) fn at_digest(&self, digest: &Digest) -> Reference {
        Reference::with_digest(
            self.inner.registry().to_string(),
            self.inner.repository().to_string(),
            digest.to_string(),
        )
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.whole())
    }
}

/// The host part of `host[:port]`, brackets kept for IPv6 (`[::1]`).
pub(crate) fn registry_host(registry: &str) -> &str {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        };
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

pub(crate) fn is_loopback_registry(registry: &str) -> bool {
    let host = registry_host(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_shorthand_is_expanded() {
        let r = ImageReference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.resolve_registry(), "index.docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert!(!r.is_loopback());
    }

    #[test]
    fn host_port_tag_and_digest() {
        let r = ImageReference::parse("127.0.0.1:5000/aurae/busybox:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "aurae/busybox");
        assert_eq!(r.tag(), Some("v1"));
        assert!(r.is_loopback());

        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = ImageReference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d));
        assert!(r.is_loopback());
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            " busybox",
            "Busybox",
            "127.0.0.1:5000/x@sha256:1234",
            "127.0.0.1:5000/x@md5:d41d8cd98f00b204e9800998ecf8427e",
            "a//b",
            "x:",
            // The reference grammar has no IPv6 literals: use a name.
            "[::1]:5000/x:latest",
        ] {
            let e = ImageReference::parse(bad).expect_err(bad);
            assert!(
                matches!(
                    e,
                    ImageError::InvalidReference { .. } | ImageError::Unsupported { .. }
                ),
                "{bad}: {e}"
            );
        }
        let long = "a".repeat(MAX_REFERENCE_LEN + 1);
        assert!(ImageReference::parse(&long).is_err());
    }

    #[test]
    fn loopback_registries() {
        assert!(is_loopback_registry("localhost"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("registry.example.com:5000"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
        assert!(!is_loopback_registry("docker.io"));
    }
}

/// Property tests (proptest): any string parses or fails with an error, never
/// a panic; a parsed reference prints as a reference that parses back to
/// itself, and its repository never climbs out with `.` or `..`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn check(s: &str) -> Result<(), TestCaseError> {
        if let Ok(r) = ImageReference::parse(s) {
            prop_assert!(!r.repository().split('/').any(|c| c == "." || c == ".."));
            prop_assert!(!r.registry().contains('/'));
            let again = ImageReference::parse(&r.to_string());
            prop_assert!(again.is_ok(), "{} does not parse back", r);
            prop_assert_eq!(again.unwrap(), r);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_strings(s in any::<String>()) {
            check(&s)?;
        }

        #[test]
        fn reference_shaped_strings(s in "([a-z0-9.:\\[\\]-]{1,12}/)?([a-z0-9._/-]{1,16})(:[A-Za-z0-9._-]{0,10})?(@sha256:[0-9a-f]{0,64})?") {
            check(&s)?;
        }

        #[test]
        fn well_formed_references_keep_their_parts(
            host in "(localhost|127\\.0\\.0\\.1|registry\\.example\\.com)(:[1-9][0-9]{0,3})?",
            repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
            tag in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
        ) {
            let r = ImageReference::parse(&format!("{host}/{repo}:{tag}")).unwrap();
            prop_assert_eq!(r.registry(), host.as_str());
            prop_assert_eq!(r.repository(), repo.as_str());
            prop_assert_eq!(r.tag(), Some(tag.as_str()));
            check(&r.to_string())?;
        }
    }
}
