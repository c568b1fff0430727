//! The services and methods the daemon serves, derived from the descriptor
//! set it registers for reflection, so that a service added to the API is
//! known to the policy without a list to keep in step.

use std::collections::BTreeMap;

use prost::Message;

/// Served by every daemon and open to every authenticated identity (see
/// `Policy::allows`); their methods are not listed in the API's descriptors.
pub(crate) const ALWAYS_ALLOWED: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Known service names (`package.Service`) and their methods.
#[derive(Debug, Clone)]
pub struct Catalog {
    services: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// Everything in `aurae_proto::FILE_DESCRIPTOR_SET`.
    pub fn served() -> Self {
        // The descriptor set is generated at build time by our own build
        // script: failing to decode it is a build defect, and an empty
        // catalog would then refuse every policy, which is the safe side.
        let set = prost_types::FileDescriptorSet::decode(aurae_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_default();
        Self::from_descriptors(&set)
    }

    pub fn from_descriptors(set: &prost_types::FileDescriptorSet) -> Self {
        let mut services = BTreeMap::new();
        for file in &set.file {
            for service in &file.service {
                let name = match file.package() {
                    "" => service.name().to_string(),
                    package => format!("{package}.{}", service.name()),
                };
                let methods = service
                    .method
                    .iter()
                    .map(|m| m.name().to_string())
                    .collect();
                services.insert(name, methods);
            }
        }
        Self { services }
    }

    pub fn has_service(&self, service: &str) -> bool {
        self.services.contains_key(service) || ALWAYS_ALLOWED.contains(&service)
    }

    pub fn has_method(&self, service: &str, method: &str) -> bool {
        ALWAYS_ALLOWED.contains(&service)
            || self
                .services
                .get(service)
                .is_some_and(|m| m.iter().any(|m| m == method))
    }

    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Every `package.Service/Method`.
    pub fn methods(&self) -> Vec<String> {
        self.services
            .iter()
            .flat_map(|(s, ms)| ms.iter().map(move |m| format!("{s}/{m}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_api_is_known_including_additive_services() {
        let c = Catalog::served();
        assert!(c.has_method("runtime.Core", "RunExecutable"));
        assert!(c.has_service("schedule.ScheduleExecutable"));
        assert!(c.has_service("vms.Vms"));
        assert!(c.has_service("instances.Instances"));
        assert!(c.has_service("grpc.health.v1.Health"));
        assert!(!c.has_method("runtime.Core", "RunExecutabel"));
        assert!(!c.has_service("runtime.Cor"));
    }
}
