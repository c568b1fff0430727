//! A RunCell request, checked before anything is pulled or created.

use std::collections::HashSet;

use super::error::CellError;
use super::limits;
use super::network::{self, NetworkRequest, PortSpec};
use super::overrides::ProcessOverrides;
use crate::cgroups::Limits;
use crate::validation::validate_name;

/// Most containers one cell may hold.
pub const MAX_CONTAINERS: usize = 64;
/// Longest accepted image reference.
pub const MAX_IMAGE_LEN: usize = 1024;

/// A RunCell as asked: the cell's name and its containers, not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellSpec {
    pub name: String,
    pub containers: Vec<ContainerSpec>,
    /// "" = the default CNI network, "none" = loopback only, else a network's name.
    pub network: String,
    pub ports: Vec<PortSpec>,
    /// The whole cell's limits; `None` fields take the daemon's defaults.
    pub limits: Limits,
}

/// One container of a [`CellSpec`]: its name and image reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// This container's own limits, inside the cell's.
    pub limits: Limits,
    /// Its command, args, env and working directory over the image's.
    pub process: ProcessOverrides,
}

/// A [`CellSpec`] once checked: images trimmed, names valid and unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CellRequest {
    pub name: String,
    pub containers: Vec<ContainerRequest>,
    pub network: NetworkRequest,
    /// In force for the cell's cgroup: the request's over the defaults.
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerRequest {
    pub name: String,
    pub image: String,
    /// Its own limits only (the cell's bound it from above).
    pub limits: Limits,
    pub process: ProcessOverrides,
}

/// The cell's name, limits (over `defaults`) and each container's name,
/// image and limits, or why not.
pub(crate) fn validate(cell: &CellSpec, defaults: Limits) -> Result<CellRequest, CellError> {
    let name = cell.name.clone();
    validate_name("cell meta.name", &name).map_err(CellError::CellName)?;
    let cell_limits = limits::cell_limits(&name, cell.limits, defaults)?;
    if cell.containers.is_empty() {
        return Err(CellError::NoContainers { cell: name });
    }
    if cell.containers.len() > MAX_CONTAINERS {
        return Err(CellError::TooManyContainers {
            cell: name,
            count: cell.containers.len(),
        });
    }
    let mut seen = HashSet::new();
    let mut containers = Vec::with_capacity(cell.containers.len());
    for (index, c) in cell.containers.iter().enumerate() {
        let cname = c.name.clone();
        validate_name("container meta.name", &cname)
            .map_err(|source| CellError::ContainerName { index, source })?;
        if !seen.insert(cname.clone()) {
            return Err(CellError::DuplicateContainer { index, name: cname });
        }
        let image = c.image.trim().to_string();
        if image.is_empty() {
            return Err(CellError::EmptyImage { container: cname });
        }
        if image.len() > MAX_IMAGE_LEN {
            return Err(CellError::ImageTooLong {
                container: cname,
                len: image.len(),
            });
        }
        if image
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            return Err(CellError::BadImage {
                container: cname,
                image,
            });
        }
        limits::check_container(&cname, c.limits, cell_limits, defaults)?;
        c.process.check().map_err(|reason| CellError::BadProcess {
            container: cname.clone(),
            reason,
        })?;
        containers.push(ContainerRequest {
            name: cname,
            image,
            limits: c.limits,
            process: c.process.clone(),
        });
    }
    let network = network::validate(&name, &cell.network, &cell.ports)?;
    Ok(CellRequest {
        name,
        containers,
        network,
        limits: cell_limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            ..Default::default()
        }
    }

    fn validate_cell(cell: &CellSpec) -> Result<CellRequest, CellError> {
        validate(cell, Limits::default())
    }

    fn cell(name: &str, containers: Vec<ContainerSpec>) -> CellSpec {
        CellSpec {
            name: name.into(),
            containers,
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_well_formed_cell() {
        let req = validate_cell(&cell(
            "web",
            vec![
                container("server", "127.0.0.1:5000/aurae/busybox:latest"),
                container("client", " busybox "),
            ],
        ))
        .expect("valid");
        assert_eq!(req.name, "web");
        assert_eq!(
            req.containers,
            [
                ContainerRequest {
                    name: "server".into(),
                    image: "127.0.0.1:5000/aurae/busybox:latest".into(),
                    limits: Limits::default(),
                    process: Default::default(),
                },
                ContainerRequest {
                    name: "client".into(),
                    image: "busybox".into(),
                    limits: Limits::default(),
                    process: Default::default(),
                },
            ]
        );
    }

    #[test]
    fn rejects_bad_cell_names() {
        for name in ["", "a/b", "..", ".x", "a b"] {
            let err = validate_cell(&cell(name, vec![container("a", "busybox")])).expect_err(name);
            assert!(matches!(err, CellError::CellName(_)), "{name:?}: {err}");
            assert!(err.to_string().contains("cell meta.name"), "{err}");
        }
    }

    #[test]
    fn rejects_empty_and_oversized_cells() {
        assert!(matches!(
            validate_cell(&cell("c", vec![])),
            Err(CellError::NoContainers { .. })
        ));
        let many = (0..=MAX_CONTAINERS)
            .map(|i| container(&format!("c{i}"), "busybox"))
            .collect();
        assert!(matches!(
            validate_cell(&cell("c", many)),
            Err(CellError::TooManyContainers { count, .. }) if count == MAX_CONTAINERS + 1
        ));
    }

    #[test]
    fn rejects_bad_container_names_with_their_index() {
        let err = validate_cell(&cell(
            "c",
            vec![container("ok", "busybox"), container("../x", "busybox")],
        ))
        .expect_err("bad name");
        assert!(
            matches!(err, CellError::ContainerName { index: 1, .. }),
            "{err}"
        );
        let message = crate::error_chain::chain(&err);
        assert!(
            message.starts_with("containers[1]: container meta.name"),
            "{message:?}"
        );
        let err = validate_cell(&cell("c", vec![container("", "busybox")])).expect_err("empty");
        assert!(matches!(err, CellError::ContainerName { index: 0, .. }));
    }

    #[test]
    fn rejects_duplicate_container_names() {
        let err = validate_cell(&cell(
            "c",
            vec![
                container("a", "busybox"),
                container("b", "busybox"),
                container("a", "busybox"),
            ],
        ))
        .expect_err("duplicate");
        assert!(
            matches!(&err, CellError::DuplicateContainer { index: 2, name } if name == "a"),
            "{err}"
        );
    }

    #[test]
    fn rejects_missing_or_malformed_images() {
        assert!(matches!(
            validate_cell(&cell("c", vec![container("a", "  ")])),
            Err(CellError::EmptyImage { .. })
        ));
        assert!(matches!(
            validate_cell(&cell("c", vec![container("a", "bad image")])),
            Err(CellError::BadImage { .. })
        ));
        assert!(matches!(
            validate_cell(&cell("c", vec![container("a", "x\u{7}")])),
            Err(CellError::BadImage { .. })
        ));
        let long = "a".repeat(MAX_IMAGE_LEN + 1);
        assert!(matches!(
            validate_cell(&cell("c", vec![container("a", &long)])),
            Err(CellError::ImageTooLong { .. })
        ));
    }

    #[test]
    fn limits_are_checked_and_take_the_defaults() {
        let defaults = Limits::from_wire(4096, 0, 0);
        let mut spec = cell("c", vec![container("a", "busybox")]);
        spec.limits = Limits::from_wire(0, 64 << 20, 0);
        spec.containers[0].limits = Limits::from_wire(100, 0, 0);
        let req = validate(&spec, defaults).expect("valid");
        assert_eq!(req.limits, Limits::from_wire(4096, 64 << 20, 0));
        assert_eq!(req.containers[0].limits, Limits::from_wire(100, 0, 0));
        spec.containers[0].limits = Limits::from_wire(0, 65 << 20, 0);
        assert!(matches!(
            validate(&spec, defaults),
            Err(CellError::ContainerAboveCell {
                what: "memory_bytes",
                ..
            })
        ));
        spec.containers[0].limits = Limits::default();
        spec.limits = Limits::from_wire(0, 0, 1);
        assert!(matches!(
            validate(&spec, defaults),
            Err(CellError::CellLimits { .. })
        ));
    }

    #[test]
    fn refuses_a_process_that_cannot_be_run_naming_the_container() {
        let mut bad = container("server", "busybox");
        bad.process.env = vec!["NOEQUALS".into()];
        let err = validate_cell(&cell("web", vec![bad])).expect_err("refused");
        assert!(
            matches!(&err, CellError::BadProcess { container, reason } if container == "server" && reason.contains("KEY=value")),
            "{err}"
        );
    }
}
