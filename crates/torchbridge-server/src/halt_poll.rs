//! Is this a virtual machine whose idle CPUs halt at once? Then every request at low load
//! pays for waking a halted CPU, and `serve` says so at start-up.
//!
//! Linux guests on KVM use the `haltpoll` cpuidle driver: an idle vCPU polls for a short
//! window (`guest_halt_poll_ns`, 200 µs by default and adaptive) before it halts, because
//! a halt is a VM exit and the wake-up an interrupt through the hypervisor. Some images
//! boot with that window at 0 (`haltpoll.guest_halt_poll_ns=0`). On the project's VM
//! that took a one-client binary-HTTP request from +67 µs over the in-process call to
//! +128 µs (`bench/RESULTS.md`, session 7). The remedy is the host's to choose: the
//! kernel setting (root), or `--idle-poll-us`, which spins in user space instead.

/// The cpuidle driver in use.
const DRIVER: &str = "/sys/devices/system/cpu/cpuidle/current_driver";
/// The haltpoll driver's polling window, in nanoseconds.
const WINDOW: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// The start-up warning when this machine's idle CPUs halt without polling, else `None`.
/// Reads two files under `/sys`; a missing or unreadable one means "not this case".
pub fn warning() -> Option<String> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    warning_for(read(DRIVER).as_deref(), read(WINDOW).as_deref())
}

/// [`warning`] given the two files' contents.
fn warning_for(driver: Option<&str>, window_ns: Option<&str>) -> Option<String> {
    if driver?.trim() != "haltpoll" {
        return None;
    }
    let window: u64 = window_ns?.trim().parse().ok()?;
    (window == 0).then(|| {
        format!(
            "this virtual machine's idle CPUs halt without polling ({WINDOW} is 0): \
             waking one adds tens of microseconds to each request at low load. Set it \
             to 200000 (Linux's default; root) or serve with --idle-poll-us 1000 \
             (`idle_poll_us=1000` in torchbridge.Server)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::warning_for;

    #[test]
    fn warns_only_for_haltpoll_with_a_zero_window() {
        let warned = warning_for(Some("haltpoll\n"), Some("0\n")).expect("a warning");
        assert!(warned.contains("guest_halt_poll_ns is 0"), "{warned}");
        assert!(warned.contains("--idle-poll-us"), "{warned}");
        assert!(warned.contains("idle_poll_us=1000"), "{warned}");
        assert_eq!(warning_for(Some("haltpoll\n"), Some("200000\n")), None);
        assert_eq!(warning_for(Some("acpi_idle\n"), Some("0\n")), None);
        assert_eq!(warning_for(None, Some("0")), None);
        assert_eq!(warning_for(Some("haltpoll"), None), None);
        assert_eq!(warning_for(Some("haltpoll"), Some("garbage")), None);
    }
}
