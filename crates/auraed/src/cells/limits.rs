//! A cell's resource limits, checked before anything is pulled or created.
//!
//! The cell's cgroup gets the request's limits over the daemon's defaults
//! (`--default-pids-max`, `--default-memory-max`): a fork bomb in any cell
//! stops at the default pids limit. A container's cgroup gets only the
//! limits its request sets; the cell's still bound it from above, since
//! cgroup limits are hierarchical. A container limit above the cell's
//! (effective) limit could never be reached, so it is refused rather than
//! silently capped: the person asking learns which number to change.

use super::error::CellError;
use crate::cgroups::Limits;

/// The cell's limits in force (the request's over `defaults`), or why not.
pub(crate) fn cell_limits(
    cell: &str,
    requested: Limits,
    defaults: Limits,
) -> Result<Limits, CellError> {
    requested
        .validate()
        .map_err(|source| CellError::CellLimits {
            cell: cell.to_string(),
            source,
        })?;
    Ok(requested.or(defaults))
}

/// Checks container `container`'s own limits against the cell's in force.
pub(crate) fn check_container(
    container: &str,
    own: Limits,
    cell: Limits,
    defaults: Limits,
) -> Result<(), CellError> {
    own.validate()
        .map_err(|source| CellError::ContainerLimits {
            container: container.to_string(),
            source,
        })?;
    let pairs = [
        (
            "pids",
            own.pids,
            cell.pids,
            defaults.pids,
            "--default-pids-max",
        ),
        (
            "memory_bytes",
            own.memory_bytes,
            cell.memory_bytes,
            defaults.memory_bytes,
            "--default-memory-max",
        ),
        ("cpu_millis", own.cpu_millis, cell.cpu_millis, None, ""),
    ];
    for (what, own, cell_value, default, flag) in pairs {
        if let (Some(value), Some(cell_value)) = (own, cell_value) {
            if value > cell_value {
                let origin = if Some(cell_value) == default {
                    format!(" (the daemon's default, {flag})")
                } else {
                    String::new()
                };
                return Err(CellError::ContainerAboveCell {
                    container: container.to_string(),
                    what,
                    value,
                    cell_value,
                    origin,
                });
            }
        }
    }
    Ok(())
}

/// What List shows for a container: its own limits, else the cell's.
pub(crate) fn in_force(own: Limits, cell: Limits) -> Limits {
    own.or(cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain::chain;

    fn defaults() -> Limits {
        Limits::from_wire(4096, 0, 0)
    }

    #[test]
    fn the_cell_takes_the_defaults_under_its_own_limits() {
        let cell =
            cell_limits("web", Limits::from_wire(0, 64 << 20, 500), defaults()).expect("valid");
        assert_eq!(cell, Limits::from_wire(4096, 64 << 20, 500));
        let err = cell_limits("web", Limits::from_wire(0, 0, 5), defaults()).expect_err("tiny");
        assert_eq!(
            chain(&err),
            "cell \"web\": limits.cpu_millis is 5: give 10 to 1000000, or 0 for the daemon's default"
        );
    }

    #[test]
    fn a_container_may_not_ask_for_more_than_its_cell() {
        let cell = Limits::from_wire(4096, 64 << 20, 0);
        check_container(
            "a",
            Limits::from_wire(100, 32 << 20, 2000),
            cell,
            defaults(),
        )
        .expect("cpu unbounded by the cell, the rest below it");
        check_container("a", Limits::from_wire(4096, 64 << 20, 0), cell, defaults())
            .expect("equal is fine");
        let err = check_container("a", Limits::from_wire(0, 128 << 20, 0), cell, defaults())
            .expect_err("memory above");
        assert_eq!(
            err.to_string(),
            "container \"a\": limits.memory_bytes 134217728 is above the cell's 67108864: \
             lower it, or raise the cell's limits.memory_bytes"
        );
        let err = check_container("a", Limits::from_wire(5000, 0, 0), cell, defaults())
            .expect_err("pids above the default");
        assert!(
            err.to_string()
                .contains("above the cell's 4096 (the daemon's default, --default-pids-max)"),
            "{err}"
        );
        let err = check_container("a", Limits::from_wire(0, 10, 0), cell, defaults())
            .expect_err("out of range");
        assert!(
            chain(&err).starts_with("container \"a\": limits.memory_bytes is 10"),
            "{}",
            chain(&err)
        );
    }

    #[test]
    fn a_container_shows_its_own_limits_else_the_cells() {
        let cell = Limits::from_wire(4096, 64 << 20, 0);
        assert_eq!(
            in_force(Limits::from_wire(0, 1 << 20, 0), cell),
            Limits::from_wire(4096, 1 << 20, 0)
        );
    }
}
