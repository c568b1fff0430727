//! Which QEMU accelerator to use. `/dev/kvm` alone proves nothing: some
//! hosts expose a paravirtual KVM (the `kvm_pvm` module) without the CPU's
//! virtualisation extensions, where unmodified guests crawl and `-accel kvm`
//! hangs instead of failing. KVM is used only when the CPU flags show
//! `vmx`/`svm`, no paravirtual KVM module is loaded, and `/dev/kvm` opens.

use std::fmt;
use std::str::FromStr;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The value of QEMU's `-accel`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

/// The operator's choice (`--vm-accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    #[default]
    Auto,
    Force(Accel),
}

impl FromStr for AccelChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Force(Accel::Kvm)),
            "tcg" => Ok(AccelChoice::Force(Accel::Tcg)),
            other => Err(format!(
                "unknown accelerator {other:?}: use auto, kvm or tcg"
            )),
        }
    }
}

/// What the host shows about virtualisation.
pub struct HostFacts<'a> {
    /// The text of /proc/cpuinfo.
    pub cpuinfo: &'a str,
    /// The text of /proc/modules (or one module name per line).
    pub modules: &'a str,
    /// Whether /dev/kvm opened read-write.
    pub kvm_opens: bool,
}

/// Modules that provide a paravirtual `/dev/kvm` unusable for unmodified guests.
const PARAVIRTUAL_KVM_MODULES: &[&str] = &["kvm_pvm"];

/// The accelerator to use and why, for the log.
pub fn choose(choice: AccelChoice, host: &HostFacts<'_>) -> (Accel, String) {
    if let AccelChoice::Force(a) = choice {
        return (a, format!("forced to {a} by --vm-accel"));
    }
    let flags = cpu_flags(host.cpuinfo);
    let hw = flags.iter().any(|f| *f == "vmx" || *f == "svm");
    let pv = host
        .modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|m| PARAVIRTUAL_KVM_MODULES.contains(m));
    match (hw, pv, host.kvm_opens) {
        (_, Some(m), _) => (
            Accel::Tcg,
            format!("tcg: /dev/kvm is a paravirtual KVM (module {m}) that hangs unmodified guests"),
        ),
        (false, None, _) => (
            Accel::Tcg,
            "tcg: the CPU shows no vmx or svm flag".to_string(),
        ),
        (true, None, false) => (
            Accel::Tcg,
            "tcg: the CPU has vmx/svm but /dev/kvm does not open".to_string(),
        ),
        (true, None, true) => (
            Accel::Kvm,
            "kvm: the CPU has vmx/svm and /dev/kvm opens".to_string(),
        ),
    }
}

/// Reads the facts of this host and chooses.
pub fn detect(choice: AccelChoice) -> (Accel, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // Containers may hide /proc/modules; /sys/module lists the same names.
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_else(|_| {
        std::fs::read_dir("/sys/module")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned() + "\n")
                    .collect()
            })
            .unwrap_or_default()
    });
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    choose(
        choice,
        &HostFacts {
            cpuinfo: &cpuinfo,
            modules: &modules,
            kvm_opens,
        },
    )
}

/// The flags of the first processor in /proc/cpuinfo.
fn cpu_flags(cpuinfo: &str) -> Vec<&str> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "flags").then_some(value)
        })
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL_VMX: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse tsc msr pae vmx sse sse2 ssse3\n\nprocessor\t: 1\nflags\t\t: fpu vmx\n";
    const AMD_SVM: &str =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme svm lahf_lm\n";
    // As on this host: no virtualisation flag, hypervisor present.
    const NO_FLAGS: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse tsc msr pae hypervisor sse sse2\n";
    const PVM_MODULES: &str = "kvm_pvm 45056 0 - Live 0x0000000000000000\nkvm 1142784 1 kvm_pvm, Live 0x0000000000000000\n";
    const KVM_MODULES: &str =
        "kvm_intel 380928 0 - Live 0x0000000000000000\nkvm 1142784 1 kvm_intel, Live 0x0000000000000000\n";

    fn pick(cpuinfo: &str, modules: &str, kvm_opens: bool) -> Accel {
        choose(
            AccelChoice::Auto,
            &HostFacts {
                cpuinfo,
                modules,
                kvm_opens,
            },
        )
        .0
    }

    #[test]
    fn kvm_only_with_hardware_flags_and_an_openable_device() {
        assert_eq!(pick(INTEL_VMX, KVM_MODULES, true), Accel::Kvm);
        assert_eq!(pick(AMD_SVM, "kvm_amd 1 0 - Live 0x0\n", true), Accel::Kvm);
        assert_eq!(pick(INTEL_VMX, KVM_MODULES, false), Accel::Tcg);
        assert_eq!(pick(NO_FLAGS, KVM_MODULES, true), Accel::Tcg);
        assert_eq!(pick("", "", true), Accel::Tcg);
    }

    #[test]
    fn a_paravirtual_kvm_is_never_used() {
        assert_eq!(pick(NO_FLAGS, PVM_MODULES, true), Accel::Tcg);
        // Even if the flags were passed through.
        assert_eq!(pick(INTEL_VMX, PVM_MODULES, true), Accel::Tcg);
        let (_, why) = choose(
            AccelChoice::Auto,
            &HostFacts {
                cpuinfo: NO_FLAGS,
                modules: PVM_MODULES,
                kvm_opens: true,
            },
        );
        assert!(why.contains("kvm_pvm"), "{why}");
        // The /sys/module form: one name per line.
        assert_eq!(pick(INTEL_VMX, "kvm\nkvm_pvm\n", true), Accel::Tcg);
        assert_eq!(pick(INTEL_VMX, "kvm\nkvm_intel\n", true), Accel::Kvm);
    }

    #[test]
    fn a_forced_choice_wins_and_parses() {
        let facts = HostFacts {
            cpuinfo: NO_FLAGS,
            modules: "",
            kvm_opens: false,
        };
        assert_eq!(choose("kvm".parse().expect("kvm"), &facts).0, Accel::Kvm);
        assert_eq!("auto".parse::<AccelChoice>(), Ok(AccelChoice::Auto));
        assert!("xen".parse::<AccelChoice>().is_err());
    }

    #[test]
    fn a_vmx_substring_is_not_a_flag() {
        assert_eq!(
            pick("flags\t: fpu vmxnet avx512_svmx\n", KVM_MODULES, true),
            Accel::Tcg
        );
    }
}
